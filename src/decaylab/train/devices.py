"""The device a trainer runs on: ``device=None`` means CUDA when available, else the CPU."""

from __future__ import annotations

import torch

from decaylab._checks import InputError, InputTypeError


def resolve_device(device=None) -> torch.device:
    """``device`` as a ``torch.device`` (``None``: ``cuda`` if ``torch.cuda.is_available()``, else ``cpu``)."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, (str, torch.device)):
        raise InputTypeError(f"device must be a str or torch.device such as 'cpu' or 'cuda:0', got "
                             f"{device!r} ({type(device).__name__})")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise InputError(f"device must name a torch device such as 'cpu' or 'cuda:0', got {device!r}") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device={device!r} needs CUDA, which this torch build or machine does not have; "
                         "use device='cpu'")
    return resolved
