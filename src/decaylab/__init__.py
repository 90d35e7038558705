"""decaylab: weight decay (L2 regularization) for PyTorch — correct in every convention, fast, and visible."""

__version__ = "0.1.0"
