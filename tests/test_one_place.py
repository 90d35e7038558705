"""Each rule of the README's table "Where each rule lives" has one implementation: these checks read the source
with ``ast`` and fail when a second one appears elsewhere, naming the file, the line and where the rule lives.

A module moved to another place: update :data:`WHERE` (paths relative to ``src/``; a path ending in ``/`` is a
whole package), nothing else."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

from decaylab._extras import PACKAGES
from decaylab.optim._decay import DECAY_SCALINGS

SRC = Path(__file__).resolve().parent.parent / "src"

#: rule → the modules that may hold it (every other module must call them)
WHERE = {
    # semi-internal torch ops (torch._…, F._…, torch.ops.aten…)
    "torch internals": ("decaylab/batched/_torch_internals.py",),
    # torch._foreach_*: torch.optim's own multi-tensor kernels, used as torch.optim uses them
    "torch foreach": ("decaylab/optim/", "decaylab/diagnostics/tensor_measures.py"),
    # torch.optim.optimizer's private helpers: the optimizer classes' torch-compatibility layer
    "torch.optim helpers": ("decaylab/optim/",),
    # creating a matplotlib figure (Figure()) and rendering it
    "figures": ("decaylab/_figures.py",),
    # starting processes: process pools, multiprocessing
    "worker processes": ("decaylab/_workers.py",),
    # s_t per decay_scaling (scale_for) and the λ conversions between scalings
    "decay scale": ("decaylab/optim/_decay.py",),
    # how many members a batched chunk holds
    "chunk plan": ("decaylab/batched/chunking.py",),
    # the decoupled shrink w ← (1 − s_t·λ)·w (and its cautious, foreach forms)
    "decoupled shrink": ("decaylab/optim/functional.py",),
    # the modules whose output files must go through decaylab._files.replace_atomically
    "output writers": ("decaylab/sweeps/", "decaylab/report/", "decaylab/cli/sweep.py",
                       "decaylab/cli/sweep_marglik.py"),
    # an optional package imported without decaylab._extras.needs: tqdm's bar falls back to no bar
    "tqdm fallback": ("decaylab/_progress.py",),
}


def lives(rule: str) -> str:
    return " or ".join(WHERE[rule])


def within(rel: str, place: str) -> bool:
    return rel == place or (place.endswith("/") and rel.startswith(place))


def allowed(rule: str, rel: str) -> bool:
    return any(within(rel, place) for place in WHERE[rule])


def parse(code: str, filename: str = "<test>") -> ast.Module:
    """The syntax tree of ``code``, each node knowing its ``parent``."""
    tree = ast.parse(code, filename=filename)
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            child.parent = node
    return tree


@cache
def modules() -> tuple[tuple[str, ast.Module], ...]:
    """Every module of src as ``(path relative to src/, its syntax tree)``."""
    return tuple((path.relative_to(SRC).as_posix(), parse(path.read_text(encoding="utf-8"), str(path)))
                 for path in sorted((SRC / "decaylab").rglob("*.py")))


def test_the_checks_read_the_whole_package_and_every_named_module_exists():
    paths = [rel for rel, _ in modules()]
    assert len(paths) > 50
    for rule, places in WHERE.items():
        for place in places:
            assert any(within(rel, place) for rel in paths), f"WHERE[{rule!r}] names {place}, which is not in src/"


def aliases(tree: ast.Module) -> dict[str, str]:
    """Local name → the dotted name its import binds (``F`` → ``torch.nn.functional``)."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                names[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


def dotted(node: ast.AST, names: dict[str, str]) -> str | None:
    """``torch._C._nn.f`` for an attribute chain rooted at an imported name, else ``None``."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id in names:
        return ".".join([names[node.id], *reversed(parts)])
    return None


def references(tree: ast.Module):
    """``(line, dotted name)`` of every imported name and outermost attribute chain rooted at an import."""
    names = aliases(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                yield node.lineno, f"{node.module}.{a.name}"
        elif isinstance(node, ast.Attribute) and not isinstance(getattr(node, "parent", None), ast.Attribute):
            name = dotted(node, names)
            if name is not None:
                yield node.lineno, name
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr" \
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) \
                and isinstance(node.args[1].value, str):
            name = dotted(node.args[0], names)
            if name is not None:
                yield node.lineno, f"{name}.{node.args[1].value}"


def violations(rule: str, found) -> list[str]:
    """``path:line: what`` for every ``(rel, line, what)`` outside the modules of ``rule``."""
    return [f"{rel}:{line}: {what}" for rel, line, what in found if not allowed(rule, rel)]


def calls(tree: ast.Module):
    """``(node, dotted name or None, the called attribute/name)`` of every call."""
    names = aliases(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            last = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
            yield node, dotted(func, names), last


# -- semi-internal torch ops ------------------------------------------------------------------------------------

def _private_torch(name: str) -> str | None:
    """Which rule a private torch name falls under, or ``None`` for a public one."""
    parts = name.split(".")
    if parts[0] != "torch":
        return None
    private = name.startswith("torch.ops") or any(p.startswith("_") and not p.startswith("__") for p in parts[1:])
    if not private or name.startswith("torch.nn.modules."):   # torch.nn's layer base classes (_BatchNorm, _ConvNd)
        return None                                            # in isinstance checks: types, not ops
    if re.fullmatch(r"torch\._foreach_\w+", name):
        return "torch foreach"
    if name.startswith("torch.optim."):
        return "torch.optim helpers"
    return "torch internals"


def test_semi_internal_torch_ops_only_in_the_torch_internals_module():
    found = {rule: [] for rule in ("torch internals", "torch foreach", "torch.optim helpers")}
    for rel, tree in modules():
        for line, name in references(tree):
            rule = _private_torch(name)
            if rule is not None:
                found[rule].append((rel, line, name))
    for rule, places in found.items():
        bad = violations(rule, places)
        assert not bad, (f"semi-internal torch ops ({rule}) live in {lives(rule)}; call a wrapper there instead "
                         f"of: " + "; ".join(bad))
    assert found["torch internals"], "the check finds nothing: it no longer reads the torch internals module"


# -- figures ----------------------------------------------------------------------------------------------------

def test_figures_only_through_the_figures_module_and_never_pyplot():
    pyplot, figures = [], []
    for rel, tree in modules():
        for line, name in references(tree):
            if name.split(".")[0] == "pylab" or name.startswith("matplotlib.pyplot") or name == "matplotlib.use":
                pyplot.append((rel, line, name))
            elif name.startswith("matplotlib.figure"):
                figures.append((rel, line, name))
        for node, _, last in calls(tree):
            if last == "savefig":
                figures.append((rel, node.lineno, "savefig"))
    assert not [f"{rel}:{line}: {name}" for rel, line, name in pyplot], (
        "pyplot and matplotlib.use change the user's backend and open figures: create figures with "
        f"{lives('figures')} (Figure() objects) instead of: "
        + "; ".join(f"{rel}:{line}: {name}" for rel, line, name in pyplot))
    bad = violations("figures", figures)
    assert not bad, f"figures are created and rendered in {lives('figures')} (new_figure, fig_to_png): " \
                    + "; ".join(bad)
    assert any(allowed("figures", rel) for rel, *_ in figures), "the check finds no Figure(): it reads nothing"


# -- worker processes -------------------------------------------------------------------------------------------

PROCESS_NAMES = re.compile(r"(torch\.)?multiprocessing(\..*)?|concurrent\.futures(\.process)?\.ProcessPoolExecutor"
                           r"|concurrent\.futures\.process(\..*)?|os\.(fork|forkpty|posix_spawnp?|spawn\w*)")


def test_worker_processes_only_in_the_worker_module():
    found = []
    for rel, tree in modules():
        found += [(rel, line, name) for line, name in references(tree) if PROCESS_NAMES.fullmatch(name)]
        found += [(rel, node.lineno, f"{last}(…)") for node, _, last in calls(tree)
                  if last in ("Process", "Pool", "ProcessPoolExecutor")]
    bad = violations("worker processes", found)
    assert not bad, (f"worker processes (dying with the parent, stopped on Ctrl-C) are started in "
                     f"{lives('worker processes')} (run_in_processes), not at: " + "; ".join(bad))
    assert any(allowed("worker processes", rel) for rel, *_ in found), "the check finds no process pool at all"


# -- s_t per decay_scaling --------------------------------------------------------------------------------------

def _names_a_scaling(node: ast.AST) -> bool:
    """Whether an operand is a variable or attribute holding a decay scaling (its name says ``scaling``)."""
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(_names_a_scaling(e) for e in node.elts)
    name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        name = str(node.slice.value)
    return "scaling" in name


def _scaling_constants(node: ast.AST) -> bool:
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(_scaling_constants(e) for e in node.elts)
    return isinstance(node, ast.Constant) and node.value in DECAY_SCALINGS


def _tests_a_scaling(test: ast.AST) -> bool:
    """Whether an expression compares a decay scaling with one of its values (``decay_scaling == "schedule"``)."""
    for node in ast.walk(test):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(_scaling_constants(o) for o in operands) and any(_names_a_scaling(o) for o in operands):
                return True
    return False


def _arithmetic(node: ast.AST | None) -> bool:
    """A number, or arithmetic on numbers: what a branch computing s_t (or a λ from it) gives."""
    return isinstance(node, (ast.BinOp, ast.UnaryOp)) or (
        isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool))


def scaling_branches(tree: ast.Module):
    """``(line, what)`` of every place that computes a number per decay scaling: a conditional expression or an
    ``if`` on a scaling's value whose branch is arithmetic, a table keyed by scaling names, a ``match`` on one."""
    for node in ast.walk(tree):
        if isinstance(node, ast.IfExp) and _tests_a_scaling(node.test) and (
                _arithmetic(node.body) or _arithmetic(node.orelse)):
            yield node.lineno, "a conditional expression on a decay scaling that computes a number"
        elif isinstance(node, ast.If) and _tests_a_scaling(node.test):
            values = [s.value for s in [*node.body, *node.orelse] if isinstance(s, (ast.Return, ast.Assign,
                                                                                      ast.AugAssign))]
            if any(_arithmetic(v) for v in values):
                yield node.lineno, "an if on a decay scaling whose branch computes a number"
        elif isinstance(node, ast.Dict) and sum(isinstance(k, ast.Constant) and k.value in DECAY_SCALINGS
                                                for k in node.keys) >= 2:
            yield node.lineno, "a table keyed by decay scalings"
        elif isinstance(node, ast.Match) and _names_a_scaling(node.subject):
            yield node.lineno, "a match on a decay scaling"


def test_s_t_per_decay_scaling_only_in_the_decay_module():
    found = [(rel, line, what) for rel, tree in modules() for line, what in scaling_branches(tree)]
    bad = violations("decay scale", found)
    assert not bad, (f"s_t per decay_scaling lives in {lives('decay scale')} (scale_for and the helpers beside it); "
                     f"call them instead of: " + "; ".join(bad))
    assert any(allowed("decay scale", rel) for rel, *_ in found), "the check finds not even scale_for's branch"


def test_the_scaling_check_finds_the_forms_a_second_s_t_takes():
    second = parse(
        "def a(lr, lr0, decay_scaling):\n"
        "    return 1.0 if decay_scaling == 'schedule' else lr\n"
        "def b(self):\n"
        "    return {'lr': self.lr, 'schedule': self.lr / self.peak_lr}[self.decay_scaling]\n"
        "def c(group, lr, lr0):\n"
        "    if group['decay_scaling'] == 'corrected':\n"
        "        return lr * lr / lr0\n"
        "def d(decay_scaling, lam):\n"
        "    if decay_scaling in ('lr', 'corrected'):\n"
        "        raise ValueError(lam)\n")
    assert sorted(line for line, _ in scaling_branches(second)) == [2, 4, 6]


# -- the chunk plan ---------------------------------------------------------------------------------------------

def test_the_chunk_plan_only_in_chunking():
    found = [(rel, node.lineno, f"{last}(…)") for rel, tree in modules() for node, _, last in calls(tree)
             if last in ("plan_chunks", "member_bytes", "memory_budget")]
    bad = violations("chunk plan", found)
    assert not bad, (f"the chunk plan lives in {lives('chunk plan')}: call plan_for_model there instead of: "
                     + "; ".join(bad))
    assert any(allowed("chunk plan", rel) for rel, *_ in found), "the check finds no chunk plan at all"


# -- output files -----------------------------------------------------------------------------------------------

WRITERS = {"os.replace", "os.rename", "os.renames", "shutil.copy", "shutil.copy2", "shutil.copyfile", "shutil.move",
           "shutil.copytree", "tempfile.mkstemp", "tempfile.NamedTemporaryFile", "numpy.save", "numpy.savez",
           "numpy.savez_compressed", "numpy.savetxt", "json.dump", "pickle.dump", "torch.save"}


def _writes(node: ast.Call, name: str | None, last: str | None) -> bool:
    if name in WRITERS or last in ("write_text", "write_bytes"):
        return True
    if last not in ("open", "fdopen"):
        return False
    method = isinstance(node.func, ast.Attribute) and name is None       # Path(...).open(mode)
    position = 0 if method else 1
    mode = node.args[position] if len(node.args) > position else next(
        (k.value for k in node.keywords if k.arg == "mode"), None)
    return isinstance(mode, ast.Constant) and isinstance(mode.value, str) and bool(set(mode.value) & set("wax+"))


def test_output_files_only_through_replace_atomically():
    found = [(rel, node.lineno, name or f"{last}(…)") for rel, tree in modules() if allowed("output writers", rel)
             for node, name, last in calls(tree) if _writes(node, name, last)]
    assert not found, ("the sweep and report outputs are written whole with decaylab._files.replace_atomically "
                       "(or write_atomically), not: " + "; ".join(f"{rel}:{line}: {what}" for rel, line, what in found))


def test_the_writer_check_tells_writing_from_reading():
    tree = parse("import json, os\nopen(p, 'rb')\nopen(p, mode='w')\npath.open('a')\nos.replace(a, b)\n"
                 "json.dump(x, fh)\njson.dumps(x)\npath.write_text(t)\n")
    assert sorted(node.lineno for node, name, last in calls(tree) if _writes(node, name, last)) == [3, 4, 5, 6, 8]


# -- optional imports -------------------------------------------------------------------------------------------

OPTIONAL = set(PACKAGES) | {"pytorch_lightning"}


def _optional(name: str) -> str | None:
    top = name.split(".")[0]
    if top in OPTIONAL:
        return top
    return "tensorboard" if name.startswith("torch.utils.tensorboard") else None


def _inside_needs(node: ast.AST) -> bool:
    """Whether ``node`` sits in the body of a ``with needs(...):``."""
    while (node := getattr(node, "parent", None)) is not None:
        if isinstance(node, ast.With) and any(
                isinstance(item.context_expr, ast.Call) and (
                    getattr(item.context_expr.func, "id", None) == "needs"
                    or getattr(item.context_expr.func, "attr", None) == "needs") for item in node.items):
            return True
    return False


def unguarded_optional_imports(tree: ast.Module):
    """``(line, module)`` of every import of an optional package outside a ``with needs(...)`` block."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            imported = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) \
                == "import_module" and node.args and isinstance(node.args[0], ast.Constant):
            imported = [str(node.args[0].value)]
        else:
            continue
        for name in imported:
            if _optional(name) is not None and not _inside_needs(node):
                yield node.lineno, name
                break


@pytest.mark.parametrize("code, lines", [
    ("from decaylab._extras import needs\nwith needs('sweep', 'x'):\n    import sklearn\n", []),
    ("def f():\n    with needs('report', 'x'):\n        from scipy.stats import t\n    import ray\n", [4]),
    ("try:\n    import matplotlib.pyplot as plt\nexcept ImportError:\n    plt = None\n", [2]),
    ("from torch.utils.tensorboard import SummaryWriter\nimport importlib\nimportlib.import_module('lightning')\n",
     [1, 3]),
])
def test_the_optional_import_check(code, lines):
    assert [line for line, _ in unguarded_optional_imports(parse(code))] == lines


def test_optional_packages_only_through_needs():
    found = [(rel, line, name) for rel, tree in modules() for line, name in unguarded_optional_imports(tree)]
    bad = [f"{rel}:{line}: {name}" for rel, line, name in found
           if not (_optional(name) == "tqdm" and allowed("tqdm fallback", rel))]
    assert not bad, ("an optional package is imported inside `with decaylab._extras.needs(extra, feature):` (one "
                     "line naming the pip install when it is missing), not at: " + "; ".join(bad))


# -- bad input vs a bug ---------------------------------------------------------------------------------------

#: where a bare ValueError/TypeError is right: the drop-in optimizers (torch's own exception and message) and the
#: folded/stacked layers standing in for torch's inside a forward (the error torch's layer would raise)
TORCH_COMPATIBLE_RAISES = ("decaylab/optim/", "decaylab/batched/folded.py", "decaylab/batched/stacked_layers.py")


def test_bad_input_is_an_input_error_so_the_command_line_reads_it_as_such():
    """Every other check of input raises decaylab._checks.InputError/InputTypeError (still a ValueError/TypeError),
    which decaylab.cli.main turns into exit 2 with one line; a bare ValueError there would read as a bug (exit 1)."""
    found = []
    for rel, tree in modules():
        if any(within(rel, place) for place in TORCH_COMPATIBLE_RAISES):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and \
                    isinstance(node.exc.func, ast.Name) and node.exc.func.id in ("ValueError", "TypeError"):
                found.append(f"{rel}:{node.lineno}: raise {node.exc.func.id}")
    assert found == [], ("bad input raises decaylab._checks.InputError / InputTypeError (read by "
                         f"decaylab.cli.main as exit 2), not: {found}")


# -- the decoupled shrink ---------------------------------------------------------------------------------------

_SCALING_METHODS = ("mul_", "mul", "_foreach_mul_", "_foreach_mul")


def shrinks(tree: ast.Module):
    """``(line, what)`` of every multiplication of a tensor by ``1 − …`` (the form of w ← (1 − s_t·λ)·w)."""
    for node, _, last in calls(tree):
        if last in _SCALING_METHODS and any(
                isinstance(a, ast.BinOp) and isinstance(a.op, ast.Sub) and isinstance(a.left, ast.Constant)
                and a.left.value == 1 for a in node.args):
            yield node.lineno, ast.unparse(node)


def test_the_decoupled_shrink_only_in_the_functional_module():
    found = [(rel, line, what) for rel, tree in modules() for line, what in shrinks(tree)]
    assert violations("decoupled shrink", found) == [], (
        f"the decoupled shrink lives in {lives('decoupled shrink')} (decoupled_decay_ and its foreach form)")
    assert any(allowed("decoupled shrink", rel) for rel, _, _ in found)          # the check sees the real one


def test_the_shrink_check_finds_a_second_shrink():
    tree = parse("def step(p, lr, wd):\n    p.mul_(1 - lr * wd)\n    torch._foreach_mul_(ps, 1.0 - lr * wd)\n"
                 "    p.mul_(beta)\n")
    assert [line for line, _ in shrinks(tree)] == [2, 3]
