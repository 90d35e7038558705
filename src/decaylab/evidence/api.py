"""``decaylab.marglik``: the Laplace evidence of a trained model and the weight decay that maximizes it.

Conventions (exact). Training minimizes a **mean** loss over the ``N`` training rows plus coupled
decay ``(λ/2)·‖w‖²`` (``weight_decay=λ`` of torch's SGD/Adam: the gradient gains ``λ·w``). Multiplied
by ``N`` this is the negative log joint ``−log p(D | θ) − log p(θ)`` of a Gaussian prior with
precision δ when

- cross-entropy (``reduction="mean"``):  ``λ = δ / N``;
- mse (torch ``MSELoss``, mean over ``N·D`` values) with noise ``σ²``:  ``λ = 2·σ²·δ / (N·D)``.

So the evidence's δ_g is returned as ``weight_decay`` λ_g in decaylab's ``coupled`` convention
and, through :func:`decaylab.convert`, in any other (:meth:`MarglikResult.convert`; for
cross-entropy δ itself is the convention ``"prior-precision"``). Parameters that
:func:`decaylab.param_groups` does not decay (biases, norms, embeddings) get the broad fixed
prior of :mod:`decaylab.evidence.prior`.

The Laplace approximation is taken at the given parameters ``θ*``: it is the evidence when ``θ*``
is a mode of the training objective (a converged model); :func:`decaylab.evidence.online.train_marglik`
trains and updates δ as it goes (Immer et al. 2021).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from decaylab._checks import InputError, InputTypeError, check_choice, check_int, check_real
from decaylab.evidence.curvature import HESSIANS, compute_curvature
from decaylab.evidence.laplace import effective_parameters
from decaylab.evidence.likelihood import check_targets, neg_log_lik_sum, resolve_loss
from decaylab.evidence.optimize import EvidenceObjective, maximize, maximize_separable
from decaylab.evidence.prior import GLOBAL, PriorStructure, prior_structure

__all__ = ["marglik", "MarglikResult", "precision_to_weight_decay", "weight_decay_to_precision"]


def precision_to_weight_decay(delta: float, loss: str, n: int, n_outputs: int = 1, sigma: float = 1.0) -> float:
    """Coupled ``weight_decay`` λ for prior precision δ: ``δ/N`` (cross-entropy), ``2σ²δ/(N·D)`` (mse)."""
    return delta / n if loss == "cross_entropy" else 2.0 * sigma ** 2 * delta / (n * n_outputs)


def weight_decay_to_precision(lam: float, loss: str, n: int, n_outputs: int = 1, sigma: float = 1.0) -> float:
    """The inverse of :func:`precision_to_weight_decay`."""
    return lam * n if loss == "cross_entropy" else lam * n * n_outputs / (2.0 * sigma ** 2)


@dataclass(frozen=True)
class _LaplaceFit:
    """What a refit reuses: the curvature, the data term and the σ given to :func:`marglik` (``None``: fitted)."""

    curv: object
    data_term: float
    sigma: float | None


@dataclass
class MarglikResult:
    """What :func:`marglik` found.

    ``log_evidence``: the Laplace log evidence at the returned precisions (``log_evidence_start``:
    at the starting ones). ``prior_precision`` / ``weight_decay``: per prior group (``"decayed"``, or
    one per decayed parameter tensor with ``per_layer=True``), δ and the coupled λ of the module
    docstring. ``parameter_weight_decay``: λ of every trainable parameter (no-decay ones get
    ``no_decay_precision`` converted the same way). ``sigma``: the Gaussian noise (mse) or ``None``.
    ``effective_parameters``: MacKay's γ. ``laplace``: the curvature and data term behind it, for
    :meth:`refit`.
    """

    log_evidence: float
    log_evidence_start: float
    prior_precision: dict[str, float]
    weight_decay: dict[str, float]
    parameter_weight_decay: dict[str, float]
    sigma: float | None
    loss: str
    hessian: str
    n_data: int
    n_outputs: int
    n_parameters: int
    effective_parameters: float
    no_decay_precision: float
    groups: dict[str, str | None] = field(default_factory=dict)
    laplace: _LaplaceFit | None = field(default=None, repr=False, compare=False)

    def refit(self, model: nn.Module, *, per_layer: bool, weight_decay: float | dict[str, float] | None = None,
              **group_options) -> MarglikResult:
        """The evidence maximized again at the same parameters and curvature, with another prior structure
        (``per_layer``, ``group_options`` as for :func:`marglik`; ``weight_decay`` the start): what
        :func:`marglik` returns for them, without recomputing the GGN. ``model``: the one this result is of."""
        if self.laplace is None:
            raise InputError("refit needs a result of decaylab.marglik (this one holds no curvature)")
        fit = self.laplace
        structure = prior_structure(model, per_layer, **group_options)
        if structure.names != fit.curv.names:
            raise InputError("model must be the one this result was computed for: its parameters differ")
        return _fit_precisions(model, structure, fit.curv, self.loss, fit.data_term, self.n_data, self.n_outputs,
                               weight_decay, fit.sigma, True, self.no_decay_precision, self.hessian)

    @property
    def lambda_(self) -> float:
        """The one coupled λ of a global prior (``per_layer=False``); an error for a per-layer prior."""
        if list(self.weight_decay) != [GLOBAL]:
            raise InputError("lambda_ is the single λ of per_layer=False; this result has one λ per layer: use "
                             "weight_decay (a dict) or param_groups(model)")
        return self.weight_decay[GLOBAL]

    def convert(self, to: str, group: str = GLOBAL, **context) -> float:
        """λ of ``group`` converted from decaylab's ``coupled`` convention to ``to`` (``decaylab.convert``)."""
        from decaylab.conventions import convert

        if group not in self.weight_decay:
            raise InputError(f"group must be one of {', '.join(map(repr, self.weight_decay))}, got {group!r}")
        return convert(self.weight_decay[group], "coupled", to, **context)

    def param_groups(self, model: nn.Module) -> list[dict]:
        """Optimizer parameter groups of ``model`` with these coupled λ (one group per λ; no-decay at 0)."""
        named = dict(model.named_parameters())
        groups: dict[str | None, list] = {}
        for name, group in self.groups.items():
            groups.setdefault(group, []).append(named[name])
        return [{"params": params, "weight_decay": 0.0 if g is None else self.weight_decay[g]}
                for g, params in groups.items()]


def _as_tensors(data, dtype: torch.dtype, model: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(X, y)`` tensors, X as ``dtype`` — except integer X for a ``model`` that embeds ids (has an
    ``nn.Embedding``/``nn.EmbeddingBag``), which stays integer."""
    if isinstance(data, torch.utils.data.Dataset) and not isinstance(data, (tuple, list)):
        items = [data[i] for i in range(len(data))]
        data = (torch.stack([torch.as_tensor(x) for x, _ in items]), torch.stack([torch.as_tensor(t) for _, t in items]))
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise InputTypeError(f"data must be an (X, y) pair of arrays/tensors or a torch Dataset of (x, y), got "
                             f"{type(data).__name__}")
    X, y = (v if torch.is_tensor(v) else torch.as_tensor(np.asarray(v)) for v in data)
    if len(X) != len(y) or len(X) < 1:
        raise InputError(f"data must have X and y with the same number of rows (≥ 1), got {len(X)} and {len(y)}")
    if X.is_floating_point() or model is None or not _embeds_ids(model):
        X = X.to(dtype)
    if not bool(torch.isfinite(X).all()):
        raise InputError("data X must contain only finite numbers")
    return X, y


def _embeds_ids(model: nn.Module) -> bool:
    return any(isinstance(m, (nn.Embedding, nn.EmbeddingBag)) for m in model.modules())


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


def marglik(model: nn.Module, data, *, hessian: str = "kron", per_layer: bool = False, loss=None,
            weight_decay: float | dict[str, float] | None = None, sigma: float | None = None, optimize: bool = True,
            no_decay_precision: float = 1e-4, max_full_parameters: int = 4096, chunk_size: int = 256,
            **group_options) -> MarglikResult:
    """The Laplace log evidence of the trained ``model`` on ``data`` and the prior precision (weight decay)
    that maximizes it.

    Algorithm: (1) split the parameters into prior groups (:mod:`.prior`); (2) compute the GGN of
    ``−log p(D | θ*)`` at the current parameters — ``"full"``, ``"kron"`` (K-FAC for ``Linear``/
    ``Conv2d``, exact bias blocks, diagonal for the rest) or ``"diag"`` (:mod:`.curvature`);
    (3) evaluate the Laplace evidence (:mod:`.laplace`) at the start δ (from ``weight_decay``, else
    δ = 1) and, if ``optimize``, maximize it over ``log δ`` per group (and ``log σ`` for mse unless
    ``sigma`` is given) with the curvature fixed (:mod:`.optimize`).

    Args:
        model: a trained ``nn.Module`` mapping a batch ``X`` to ``[N, C]`` logits or ``[N, D]`` outputs.
        data: the training rows ``(X, y)`` (arrays/tensors) or a torch ``Dataset`` of ``(x, y)``.
        hessian: ``"kron"`` (default), ``"diag"``, or ``"full"`` (at most ``max_full_parameters``).
        per_layer: one δ per decayed parameter tensor instead of one for all.
        loss: ``"cross_entropy"`` / ``"mse"`` (or ``nn.CrossEntropyLoss()`` / ``nn.MSELoss()``); ``None``
            infers it from ``y`` (integers → cross-entropy).
        weight_decay: the coupled λ the model was trained with (the start of the search, and the
            evidence reported as ``log_evidence_start``): one number, or ``{group: λ}`` for the groups of
            :attr:`MarglikResult.weight_decay` (missing groups start at δ = 1).
        sigma: a fixed Gaussian noise for mse (default: fitted with δ; starts at the residuals' RMS).
        optimize: maximize over δ (and σ); ``False`` only evaluates at the start.
        no_decay_precision: δ₀ of the broad prior of no-decay parameters (> 0).
        group_options: ``no_decay_types``, ``no_decay_names``, ``decay_names``, ``decay_embeddings``,
            ``pattern_syntax`` as for :func:`decaylab.param_groups` (the :class:`decaylab.groups.DecayRule`
            that decides which parameters get the learned prior).
    """
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_choice("hessian", hessian, HESSIANS)
    if not isinstance(per_layer, bool):
        raise InputTypeError(f"per_layer must be a bool, got {per_layer!r}")
    no_decay_precision = check_real("no_decay_precision", no_decay_precision, low=0.0, low_open=True)
    max_full_parameters = check_int("max_full_parameters", max_full_parameters, low=1)
    chunk_size = check_int("chunk_size", chunk_size, low=1)
    if isinstance(weight_decay, dict):
        weight_decay = {k: check_real(f"weight_decay[{k!r}]", v, low=0.0, low_open=True) for k, v in weight_decay.items()}
    elif weight_decay is not None:
        weight_decay = check_real("weight_decay", weight_decay, low=0.0, low_open=True)
    if sigma is not None:
        sigma = check_real("sigma", sigma, low=0.0, low_open=True)
    structure = prior_structure(model, per_layer, **group_options)
    first = next(iter(model.parameters()))
    X, y = _as_tensors(data, first.dtype, model)
    kind = resolve_loss(loss, y)
    n_params = sum(p.numel() for n, p in model.named_parameters() if n in structure.group_of)
    if hessian == "full" and n_params > max_full_parameters:
        raise InputError(f"hessian='full' builds a {n_params}×{n_params} matrix; this model has {n_params} trainable "
                         f"parameters, more than max_full_parameters={max_full_parameters}: use hessian='kron' or "
                         f"'diag', or raise max_full_parameters")
    with _eval_mode(model):
        with torch.no_grad():
            out = model(X)
        out = out.reshape(len(X), -1)
        y = check_targets(kind, y, out.shape[1])
        data_term = float(neg_log_lik_sum(kind, out.double(), y.double() if kind == "mse" else y))
        curv = compute_curvature(model, X, kind, hessian, structure.names, chunk=chunk_size)
    return _fit_precisions(model, structure, curv, kind, data_term, len(X), out.shape[1], weight_decay, sigma,
                           optimize, no_decay_precision, hessian)


def _fit_precisions(model, structure: PriorStructure, curv, kind, data_term, n, d, weight_decay, sigma, optimize,
                    no_decay_precision, hessian) -> MarglikResult:
    named = dict(model.named_parameters())
    sq_norms = {k: float(named[k].detach().double().pow(2).sum()) for k in structure.names}
    objective = EvidenceObjective(curv, structure, kind, data_term, n * d, sq_norms, no_decay_precision)
    sigma0 = None
    if kind == "mse":
        sigma0 = sigma if sigma is not None else max(math.sqrt(data_term / (n * d)), 1e-6)
    if not isinstance(weight_decay, dict):
        weight_decay = {g: weight_decay for g in structure.groups}
    starts = [1.0 if weight_decay.get(g) is None else weight_decay_to_precision(weight_decay[g], kind, n, d,
                                                                                 sigma0 or 1.0)
              for g in structure.groups]
    log_prec = torch.log(torch.tensor(starts, dtype=torch.float64))
    log_sigma = None if sigma0 is None else torch.tensor(math.log(sigma0), dtype=torch.float64)
    with torch.no_grad():
        value_start = float(objective(log_prec, log_sigma))
    value = value_start
    if optimize:
        fit_sigma = kind == "mse" and sigma is None
        if fit_sigma:
            log_prec, log_sigma, value = maximize(objective, log_prec, log_sigma)
        elif curv.kind in ("kron", "diag"):
            log_prec, value = maximize_separable(objective, log_prec, log_sigma)
        else:
            log_prec, _, value = maximize(_FixedSigma(objective, log_sigma), log_prec, None)
    result = _result(structure, curv, objective, kind, log_prec, log_sigma, value, value_start, n, d,
                     no_decay_precision, hessian)
    result.laplace = _LaplaceFit(curv, data_term, sigma)
    return result


class _FixedSigma:
    """The objective with σ held at a given value (or absent)."""

    def __init__(self, objective: EvidenceObjective, log_sigma):
        self.objective, self.log_sigma = objective, log_sigma

    def __call__(self, log_prec, _):
        return self.objective(log_prec, self.log_sigma)


def _result(structure, curv, objective, kind, log_prec, log_sigma, value, value_start, n, d, no_decay_precision,
            hessian) -> MarglikResult:
    sigma = None if log_sigma is None else float(torch.exp(log_sigma))
    s = sigma or 1.0
    prec = {g: float(torch.exp(v)) for g, v in zip(structure.groups, log_prec)}
    wd = {g: precision_to_weight_decay(v, kind, n, d, s) for g, v in prec.items()}
    per_param = {k: (precision_to_weight_decay(no_decay_precision, kind, n, d, s) if g is None else wd[g])
                 for k, g in structure.group_of.items()}
    scale = torch.tensor(1.0 / s ** 2 if kind == "mse" else 1.0, dtype=torch.float64)
    gamma = effective_parameters(curv, objective.precisions(log_prec), scale)
    return MarglikResult(log_evidence=value, log_evidence_start=value_start, prior_precision=prec, weight_decay=wd,
                         parameter_weight_decay=per_param, sigma=sigma, loss=kind, hessian=hessian, n_data=n,
                         n_outputs=d, n_parameters=sum(curv.sizes), effective_parameters=gamma,
                         no_decay_precision=no_decay_precision, groups=dict(structure.group_of))
