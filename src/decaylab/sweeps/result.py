"""What a sweep returns: the per-member table, the per-λ summary, the chosen λ, and its plot and files."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

from decaylab._figures import fig_to_png, new_figure
from decaylab._files import write_atomically
from decaylab.sweeps.store import plain_json

TABLE_COLUMNS = ("lambda", "lr", "seed", "fold", "train_loss", "val_loss", "val_metric", "val_accuracy",
                 "weight_norm", "epochs_run", "steps", "diverged", "wall_time", "test_loss", "test_accuracy",
                 "from_store", "key")


@dataclass
class SweepResult:
    """The outcome of :func:`decaylab.sweep`.

    ``table``: one dict per member (columns :data:`TABLE_COLUMNS`); ``summary``: one dict per
    (lr, λ) with ``mean``/``std``/``se`` of the validation metric over folds × seeds;
    ``best_lambda`` (best mean) and ``lambda_1se`` (largest λ within one standard error of it,
    at the best lr); ``metric`` is ``"accuracy"`` (higher is better) or ``"loss"`` (lower is better);
    ``warnings``: what the choice needs said — a best λ on the grid's edge, a flat curve
    (:func:`decaylab.sweeps.select.choice_warnings`).
    """

    table: list[dict]
    summary: list[dict]
    best_lambda: float | None
    best_lr: float | None
    lambda_1se: float | None
    metric: str
    config: dict = field(default_factory=dict)
    engine: str = ""
    wall_time: float = 0.0
    trained: int = 0                       # members trained in this call (the rest came from the store)
    path: str = ""                         # one line: the engine's path for the model (fast/vmap/sequential) and why
    warnings: list[str] = field(default_factory=list)

    @property
    def n_diverged(self) -> int:
        return sum(bool(r["diverged"]) for r in self.table)

    def diverged_members(self, most: int = 5) -> str:
        """The diverged members named by λ, lr, fold and seed (the first ``most``, then how many more), or ``""``."""
        names = [f"λ={r['lambda']:.3g} lr={r['lr']:.3g} fold={r['fold']} seed={r['seed']}"
                 for r in self.table if r["diverged"]]
        more = f" and {len(names) - most} more" if len(names) > most else ""
        return "; ".join(names[:most]) + more

    def to_csv(self, path: str | os.PathLike | None = None) -> str:
        """The member table as CSV text (also written to ``path`` if given)."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=TABLE_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in self.table:
            writer.writerow({k: ("" if _is_nan(row.get(k)) else row.get(k)) for k in TABLE_COLUMNS})
        text = buffer.getvalue()
        if path is not None:
            write_atomically(path, text)
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: chosen λ, summary, table and configuration (NaN → null)."""
        return plain_json({"best_lambda": self.best_lambda, "best_lr": self.best_lr, "lambda_1se": self.lambda_1se,
                          "metric": self.metric, "engine": self.engine, "path": self.path,
                          "wall_time": self.wall_time, "trained": self.trained, "n_diverged": self.n_diverged,
                          "warnings": self.warnings, "summary": self.summary,
                          "table": self.table, "config": self.config})

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"
        if path is not None:
            write_atomically(path, text)
        return text

    def plot(self, ax=None):
        """Validation curve: mean ± std of the metric over λ per lr, with best λ and λ_1se marked."""
        if ax is None:
            fig, ax = new_figure(6.4, 4.0, extra="sweep", feature="plotting a validation curve", layout=None)
        else:
            fig = ax.figure
        lrs = sorted({s["lr"] for s in self.summary})
        for lr in lrs:
            rows = [s for s in self.summary if s["lr"] == lr]
            lam = [s["lambda"] for s in rows]
            mean = [s["mean"] for s in rows]
            std = [s["std"] for s in rows]
            label = f"validation {self.metric}" + (f" (lr {lr:g})" if len(lrs) > 1 else "")
            ax.errorbar(lam, mean, yerr=std, marker="o", ms=3, capsize=2, label=label)
        positive = [s["lambda"] for s in self.summary if s["lambda"] > 0]
        if positive:
            if len(positive) < len(self.summary):
                ax.set_xscale("symlog", linthresh=min(positive))
            else:
                ax.set_xscale("log")
        if self.best_lambda is not None:
            ax.axvline(self.best_lambda, color="tab:green", ls="--", label=f"best λ = {self.best_lambda:.3g}")
        if self.lambda_1se is not None:
            ax.axvline(self.lambda_1se, color="tab:red", ls=":", label=f"λ_1se = {self.lambda_1se:.3g}")
        ax.set_xlabel("λ (weight_decay)")
        ax.set_ylabel(f"validation {self.metric} (mean ± std over folds)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        return fig

    def plot_png(self) -> bytes:
        """:meth:`plot` as PNG bytes."""
        return fig_to_png(self.plot())


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)
