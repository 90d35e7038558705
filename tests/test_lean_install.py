"""The core install is torch + numpy: everything else is an extra, and a missing one is one line
naming the ``pip install 'decaylab[...]'`` that fixes it. Checked in a subprocess where importing
scikit-learn, scipy, matplotlib, tqdm, mnist1d, ray, lightning, transformers or tensorboard fails, as on a
core-only install."""

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow  # each test is a fresh interpreter importing torch with the extras blocked (2-6 s)

BLOCK = textwrap.dedent("""
    import importlib.abc, importlib.machinery, sys
    OPTIONAL = {"sklearn", "scipy", "matplotlib", "tqdm", "mnist1d", "ray", "lightning", "transformers",
                "tensorboard"}

    class Refuse(importlib.abc.Loader):          # importing fails as for a package that is not installed
        def create_module(self, spec):
            raise ModuleNotFoundError(f"No module named {spec.name!r}", name=spec.name)

        def exec_module(self, module):
            pass

    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in OPTIONAL:
                return importlib.machinery.ModuleSpec(name, Refuse())   # no origin: torch skips it too
            return None

    sys.meta_path.insert(0, NotInstalled())
""")


def run(code):
    return subprocess.run([sys.executable, "-c", BLOCK + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300)


def test_the_core_works_with_torch_and_numpy_only():
    proc = run("""
        import torch, decaylab
        from decaylab.optim import AdamW, SGDW
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 2))
        opt = AdamW(decaylab.param_groups(model, 0.05), lr=1e-3)
        mon = decaylab.DecayMonitor(model, opt)
        loss = model(torch.randn(16, 4)).square().mean() + decaylab.l2_penalty(model, 1e-4)
        loss.backward(); opt.step()
        print(decaylab.convert(0.05, "torch-adamw", "schedule", lr=1e-3), len(mon.history),
              ",".join(decaylab.doctor(model, opt, total_steps=100).codes), "sklearn" in sys.modules)
    """)
    assert proc.returncode == 0, proc.stderr
    # 6 tensors watched; the doctor's verdict is the one it gives with every extra installed: λ = 0.05 at
    # lr 1e-3 is a time scale of 2e4 steps, weak over a 100-step run
    assert proc.stdout.split() == ["5e-05", "6", "decay-weak", "False"]


def test_a_missing_extra_names_the_pip_install():
    proc = run("""
        import numpy as np, decaylab
        from decaylab._extras import MissingExtra
        X, y = np.random.default_rng(0).normal(size=(40, 3)), np.arange(40) % 2
        try:
            decaylab.sweep("mlp", (X, y), [1e-3], epochs=1)
        except MissingExtra as exc:
            print(exc)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ("cross-validation folds needs scikit-learn, which is not installed: "
                                   "pip install 'decaylab[sweep]'")


def test_the_command_line_says_it_in_one_line():
    for argv, extra in ((["sweep", "moons", "--out", "/tmp/decaylab-lean-test"], "sweep"),
                        (["repro", "decoupling", "--quick", "--out", "/tmp/decaylab-lean-test"], "sweep")):
        proc = run(f"""
            import sys
            from decaylab.cli import main
            sys.exit(main({argv!r}))
        """)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, proc.stderr
        assert len(lines) == 1 and f"pip install 'decaylab[{extra}]'" in lines[0], proc.stderr


def test_the_framework_integrations_name_their_extra():
    proc = run("""
        import decaylab, decaylab.integrations
        from decaylab._extras import MissingExtra
        for name in ("lightning", "transformers"):
            try:
                __import__(f"decaylab.integrations.{name}")
            except MissingExtra as exc:
                print(exc)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "decaylab.integrations.lightning needs lightning, which is not installed: pip install 'decaylab[lightning]'",
        "decaylab.integrations.transformers needs transformers, which is not installed: "
        "pip install 'decaylab[transformers]'"]
