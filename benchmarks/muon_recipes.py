"""The published Muon / Lion weight-decay recipes, read through decaylab's conventions.

For each recipe (its optimizer, lr and λ as published, on one 1024×4096 matrix): the decay it removes per
step (lr·λ for all of them: each decays at the unadjusted lr), its EMA timescale τ_iter = 1/(lr·λ), the RMS
of one update (k·lr, :mod:`decaylab.conventions`), and the torch-AdamW λ whose decay is the same relative to
its update (``convert(λ, recipe, "torch-adamw")``, update-matched: approximate, since Newton–Schulz is not
exactly orthogonal). Run: ``.venv/bin/python benchmarks/muon_recipes.py``.
"""

from __future__ import annotations

from decaylab.conventions import CONVENTIONS, convert

SHAPE = (1024, 4096)

#: (recipe, convention, lr, λ, context beyond lr and shape)
RECIPES = (
    ("torch AdamW (reference)", "torch-adamw", 1e-3, 0.1, {}),
    ("torch.optim.Muon defaults (adjust_lr_fn=None: 'original')", "muon-original", 1e-3, 0.1, {}),
    ("Moonlight (torch 'match_rms_adamw': AdamW's lr and λ reused)", "muon-match-rms", 1e-3, 0.1, {}),
    ("KellerJordan/Muon (Muon lr 0.02, wd 0.01; AdamW lr 3e-4 for the rest)", "muon-original", 0.02, 0.01, {}),
    ("Keras Muon defaults (rms_rate 0.2, weight_decay 0.004)", "muon-update-rms", 1e-3, 0.004,
     {"update_rms": 0.2}),
    ("Lion paper (AdamW's lr/10, λ×10)", "lion", 1e-4, 1.0, {}),
)


def update_rms(convention: str, lr: float, context: dict) -> float:
    """The RMS of one update of this convention's optimizer at ``lr`` on :data:`SHAPE` (k·lr)."""
    one = convert(1.0, convention, "torch-adamw", lr=lr, shape=SHAPE, **context)   # = 0.2 / k
    return 0.2 / one * lr


def main() -> None:
    print(f"matrix {SHAPE[0]}×{SHAPE[1]}; update RMS of torch AdamW taken as 0.2·lr (Moonlight's measurement)")
    print("| recipe | convention | lr | λ | decay per step | τ_iter (steps) | update RMS | torch-AdamW λ, same decay "
          "relative to the update |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, convention, lr, lam, context in RECIPES:
        assert convention in CONVENTIONS
        rms = update_rms(convention, lr, context)
        adamw = convert(lam, convention, "torch-adamw", lr=lr, shape=SHAPE, **context)
        print(f"| {name} | `{convention}` | {lr:g} | {lam:g} | {lr * lam:.3g} | {1 / (lr * lam):,.0f} | {rms:.3g} | "
              f"{adamw:.3g} |")


if __name__ == "__main__":
    main()
