"""λ for the run you cannot sweep: scaling rules fitted on small measured runs and carried to a larger one.

Modules, one idea each: :mod:`~decaylab.scaling.settings` (a run's N, width, B, epochs, lr, P and λ convention;
which one variable a ladder varies), :mod:`~decaylab.scaling.rungs` (a measured rung: its validation curve, best λ
and bootstrap, read from a SweepResult, a results.json or a store), :mod:`~decaylab.scaling.rules` (the named rules,
each as the timescale it holds, with formula, units and source), :mod:`~decaylab.scaling.fit` (a power law with a
bootstrap interval), :mod:`~decaylab.scaling.prediction` (the prediction per rule, its interval, the extrapolation
distance and which rules the measured runs are consistent with) and :mod:`~decaylab.scaling.support` (the τ_epoch
range the rules and measured ladders support, for the doctor).

    from decaylab.scaling import predict
    p = predict([small, medium], "rows=16000")       # SweepResults, results.json paths or Rung objects
    print(p); p.rule("wang-aitchison").lam
"""

import importlib

_HOME = {"predict": ("decaylab.scaling.prediction", "predict_lambda"),
         "predict_lambda": ("decaylab.scaling.prediction", "predict_lambda"),
         "ScalingPrediction": ("decaylab.scaling.prediction", "ScalingPrediction"),
         "RulePrediction": ("decaylab.scaling.prediction", "RulePrediction"),
         "extrapolation": ("decaylab.scaling.prediction", "extrapolation"),
         "RULES": ("decaylab.scaling.rules", "RULES"), "Rule": ("decaylab.scaling.rules", "Rule"),
         "Rung": ("decaylab.scaling.rungs", "Rung"), "rung_from_result": ("decaylab.scaling.rungs", "rung_from_result"),
         "rungs_from_path": ("decaylab.scaling.rungs", "rungs_from_path"),
         "RunSettings": ("decaylab.scaling.settings", "RunSettings"),
         "fit_power_law": ("decaylab.scaling.fit", "fit_power_law")}

__all__ = list(_HOME)


def __getattr__(name):
    if name in _HOME:
        module, attr = _HOME[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'decaylab.scaling' has no attribute {name!r}")
