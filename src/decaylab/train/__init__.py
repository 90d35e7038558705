"""Training one model: the plain :func:`fit` loop, its :class:`History` and the callback protocol, and the
two rules every trainer shares — when a run has diverged (:mod:`.divergence`) and which device it runs on
(:mod:`.devices`). Many members at once: :mod:`decaylab.batched`."""

from .callbacks import Callback, EarlyStopping, ProgressBar, TrainState
from .fit import History, evaluate, fit

__all__ = ["Callback", "EarlyStopping", "History", "ProgressBar", "TrainState", "evaluate", "fit"]
