"""lr × λ maps and what theory predicts of them.

- :mod:`.lr_map` — :func:`~.lr_map.lr_decay_map`: every (lr, λ, seed) cell trained as one batched run;
- :mod:`.basin` — the basin of good cells and the slope of log(best λ) against log(lr), with intervals;
- :mod:`.theory` — the predicted slope per optimizer and regime (fixed point, rotational equilibrium);
- :mod:`.regimes` — which regime a model is in (its scale-invariant weights) and the equilibrium check.
"""
