"""Training: the plain :func:`fit` loop, its :class:`History`, and the callback protocol."""

from .callbacks import Callback, EarlyStopping, ProgressBar, TrainState
from .fit import History, evaluate, fit

__all__ = ["Callback", "EarlyStopping", "History", "ProgressBar", "TrainState", "evaluate", "fit"]
