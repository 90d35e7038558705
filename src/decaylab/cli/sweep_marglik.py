"""``decaylab sweep DATA --method marglik``: run the evidence sweep and write its files like a grid sweep.

Writes ``DIR/results.json`` and ``DIR/results.csv`` (the :class:`~decaylab.sweeps.marglik.MarglikSweepResult`,
one row per seed, plus the evidence curve and the per-layer λ in the JSON), ``DIR/evidence_curve.png`` and
the HTML report ``DIR/index.html`` + ``summary.json`` — all five rendered in memory, then written as one set
(:func:`decaylab._files.replace_atomically`: a failed write leaves the previous set whole). Finished runs are
kept in the results store (``--store``, default ``DIR/sweep.sqlite``) as they finish: the same command again
trains only what is missing, after Ctrl-C (exit 130) or a failed write (exit 2) alike.
"""

from __future__ import annotations

import os
import sys

TITLE = "Choosing λ by the Laplace evidence"


OUTPUT_FILES = ("results.json", "results.csv", "evidence_curve.png", "index.html", "summary.json")


def run_marglik(args, model, data, options: dict, out_dir) -> int:
    """Train with the options given (``options``: the command line's, the store's path included) and write the
    files; the exit code."""
    import decaylab
    from decaylab.cli.sweep_common import train_and_write

    store = options["store"]

    def train():
        return decaylab.sweep(model, data, args.lambdas, **options)

    result = train_and_write(train, lambda r: write_marglik_outputs(r, out_dir, args.data), out_dir, store, "run")
    if result is None:
        return 130
    from decaylab.report import text_table

    if result.best_lambda is None:
        print(f"decaylab sweep: no usable run: all {len(result.table)} diverged (NaN or runaway loss); try a "
              "smaller --lr", file=sys.stderr)
        return 1
    print(text_table(layer_rows(result)))
    print(f"\nevidence λ = {result.best_lambda:.4g} (one global λ; per layer above), {len(result.table)} run(s): "
          f"{result.trained} trained, {len(result.table) - result.trained} from the store, in "
          f"{result.wall_time:.1f} s", file=sys.stdout)
    print(f"wrote {out_dir / 'results.json'}, results.csv, evidence_curve.png, index.html", file=sys.stdout)
    return 0


def layer_rows(result) -> list[dict]:
    """One row per (lr, seed, layer): the final λ of that layer, the run's global λ and its evidence."""
    rows = []
    for run, row in zip(result.layer_weight_decay, result.table):
        for layer, lam in run["weight_decay"].items():
            rows.append({"lr": f"{run['lr']:.3g}", "seed": run["seed"], "layer": layer, "λ": f"{lam:.4g}",
                         "global λ": f"{row['lambda']:.4g}", "log evidence": f"{row['log_evidence']:.2f}",
                         "test acc": "" if row["test_accuracy"] != row["test_accuracy"] else
                         f"{row['test_accuracy']:.4f}"})
    return rows


def write_marglik_outputs(result, out_dir, data_name: str) -> None:
    """results.json, results.csv, evidence_curve.png and the HTML report in ``out_dir``: all five rendered in
    memory, then written together (a failed write leaves the previous set whole)."""
    from decaylab._files import replace_atomically
    from decaylab.report import Figure, Section, Table, render_report

    png = result.plot_png()
    rows = layer_rows(result)
    columns = list(rows[0]) if rows else []
    cfg = result.config
    text = (f"{len(result.table)} model(s) were trained on {os.path.basename(str(data_name))}, each once on all "
            f"rows, with the prior precision refitted from the Laplace evidence ({cfg['hessian']} GGN, "
            f"{'one λ per layer' if cfg['per_layer'] else 'one global λ'}) every {cfg['marglik_frequency']} "
            f"epoch(s) (Immer et al. 2021), in {result.wall_time:.1f} s. "
            + ("Every run diverged: the evidence chose no λ." if result.best_lambda is None else
               f"The evidence's single global λ (coupled weight_decay) is {result.best_lambda:.4g}."))
    section = Section(key="evidence_curve", title="Evidence curve and λ per layer", text=text,
                      figures=[Figure(name="evidence_curve", png=png,
                                      caption="Laplace log evidence and the learned λ per layer during training")],
                      tables=[Table(columns=columns, rows=[[r[c] for c in columns] for r in rows],
                                    caption="Final λ per layer (coupled weight_decay) per run")])
    summary = {"best_lambda": result.best_lambda, "metric": result.metric, "runs": len(result.table),
               "method": "marglik", "hessian": cfg["hessian"], "per_layer": cfg["per_layer"],
               "layer_weight_decay": result.layer_weight_decay, "seconds": round(result.wall_time, 2),
               "trained": result.trained}
    files = {"results.json": result.to_json(), "results.csv": result.to_csv(), "evidence_curve.png": png,
             **render_report(TITLE, [section], summary)}
    replace_atomically(out_dir, files)
