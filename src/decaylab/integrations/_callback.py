"""What the framework callbacks share: their settings, the monitor they attach, the doctor run and
the scalars they hand to the framework's logger. Imports no framework."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch

from decaylab._checks import InputTypeError, check_choice, check_int
from decaylab.diagnostics.monitor import FIELDS, METRICS, DecayMonitor

__all__ = ["DecayDoctorWarning", "MonitorCallbackCore", "unwrap_optimizer"]


class DecayDoctorWarning(UserWarning):
    """A finding of :func:`decaylab.doctor`, raised when a framework callback starts training."""


def unwrap_optimizer(optimizer: object) -> torch.optim.Optimizer:
    """The torch optimizer inside a framework's wrapper (accelerate's ``AcceleratedOptimizer``,
    Lightning's ``LightningOptimizer``), whose ``step`` runs the hooks the monitor registers."""
    inner = optimizer
    while not _is_plain_optimizer(inner) and isinstance(getattr(inner, "optimizer", None), torch.optim.Optimizer):
        inner = inner.optimizer
    if not isinstance(inner, torch.optim.Optimizer):
        raise InputTypeError(f"optimizer must be a torch.optim.Optimizer or a wrapper of one, "
                        f"got {type(optimizer).__name__}")
    return inner


def unwrap_scheduler(scheduler: object | None, optimizer: torch.optim.Optimizer) -> object | None:
    """The torch LR scheduler inside a framework's wrapper (accelerate's ``AcceleratedScheduler``), if it
    schedules ``optimizer``; else ``None`` (the doctor then judges without it)."""
    inner = scheduler
    while inner is not None and hasattr(inner, "scheduler"):
        inner = inner.scheduler
    owner = getattr(inner, "optimizer", None)
    if owner is None:
        return None
    try:
        return inner if unwrap_optimizer(owner) is optimizer else None
    except TypeError:
        return None


def _is_plain_optimizer(optimizer: object) -> bool:
    """A torch optimizer that is not a wrapper around another one."""
    return isinstance(optimizer, torch.optim.Optimizer) and not isinstance(
        getattr(optimizer, "optimizer", None), torch.optim.Optimizer)


class MonitorCallbackCore:
    """The framework-independent half of a ``DecayMonitorCallback``.

    Args:
        every, include, max_records: passed to :class:`~decaylab.diagnostics.monitor.DecayMonitor`.
        metrics: the fields logged per tensor (:data:`decaylab.diagnostics.monitor.FIELDS`).
        doctor: run :func:`decaylab.doctor` when training starts.

    After training starts: ``monitor`` (the :class:`~decaylab.diagnostics.monitor.DecayMonitor` of the first optimizer),
    ``monitors`` (one per optimizer) and ``findings`` (the doctor's :class:`~decaylab.diagnostics.doctor.Findings` over
    all optimizers together, empty with ``doctor=False``). A param group added during training is
    monitored from the next step on, and the doctor runs again over the optimizers with it
    (:meth:`check_groups`): ``findings`` is then that run's.
    """

    def __init__(self, *, every: int | None = None, include: Iterable[str] | None = None, max_records: int = 512,
                 metrics: Sequence[str] = (*METRICS, "predicted_angle"), doctor: bool = True):
        if every is not None:
            check_int("every", every, low=1)
        check_int("max_records", max_records, low=2)
        if isinstance(metrics, str):
            metrics = (metrics,)
        for m in metrics:
            check_choice("metrics", m, FIELDS)
        if not isinstance(doctor, bool):
            raise InputTypeError(f"doctor must be a bool, got {doctor!r}")
        self.every, self.include, self.max_records = every, include, max_records
        self.metrics, self.doctor = tuple(metrics), doctor
        self.monitors: list[DecayMonitor] = []
        self.findings: list = []
        self._logged_steps: list[int] = []
        self._doctored_sizes: list[tuple[int, ...]] = []
        self._setup: tuple | None = None   # (model, optimizers, total steps, scheduler, warn) of start()

    @property
    def monitor(self) -> DecayMonitor | None:
        return self.monitors[0] if self.monitors else None

    def start(self, model: torch.nn.Module, optimizers: object | Sequence[object], total_steps: float | None,
              warn: Callable[[str], None], scheduler: object | None = None) -> None:
        """Attach a monitor to each of ``optimizers`` (one, or a list: a GAN's) and run the doctor over them
        together for a run of ``total_steps`` optimizer steps (``None`` or not finite: unknown; then read
        from ``scheduler``, the framework's LR scheduler, which also gives the peak lr); ``warn(message)``
        reports each finding of severity error or warning."""
        if not isinstance(optimizers, (list, tuple)):
            optimizers = [optimizers]
        optimizers = [unwrap_optimizer(o) for o in optimizers]
        self.stop()
        self.monitors = [DecayMonitor(model, o, every=self.every, include=self.include,
                                      max_records=self.max_records) for o in optimizers]
        self._logged_steps = [0] * len(self.monitors)
        self.findings = []
        steps = int(total_steps) if total_steps is not None and math.isfinite(total_steps) and total_steps > 0 else None
        schedules = [unwrap_scheduler(scheduler, o) for o in optimizers]
        self._setup = (model, optimizers, steps, next((s for s in schedules if s is not None), None), warn)
        self._run_doctor()

    def _run_doctor(self) -> None:
        """Run the doctor over the optimizers as they are now (if ``doctor``) and report, through ``warn``,
        its findings of severity error or warning that the previous run did not report."""
        self._doctored_sizes = [monitor.group_sizes for monitor in self.monitors]
        if not self.doctor:
            return
        from decaylab.diagnostics.doctor import doctor

        model, optimizers, steps, scheduler, warn = self._setup
        reported = {(f.code, f.params) for f in self.findings}
        self.findings = doctor(model, optimizers if len(optimizers) > 1 else optimizers[0], total_steps=steps,
                               scheduler=scheduler)
        for finding in self.findings:
            if finding.severity != "info" and (finding.code, finding.params) not in reported:
                warn(f"decaylab.doctor: {finding}")

    def check_groups(self) -> None:
        """Call after each optimizer step: when a monitor has taken in parameter groups added during
        training (``add_param_group``; it watches them from the step after they were added), run the
        doctor again over the optimizers as they are then, so its findings cover the new groups too
        (only findings it had not reported are reported)."""
        if [monitor.group_sizes for monitor in self.monitors] != self._doctored_sizes:
            self._run_doctor()

    def new_scalars(self) -> dict[str, float]:
        """Each monitor's :meth:`~decaylab.diagnostics.monitor.DecayMonitor.scalars` if it recorded a step since
        the last call, merged (parameter names are the model's, so they do not collide), else ``{}`` (a logger gets
        each record once)."""
        out: dict[str, float] = {}
        for i, monitor in enumerate(self.monitors):
            latest = monitor.last_recorded_step
            if latest > self._logged_steps[i]:
                self._logged_steps[i] = latest
                out.update(monitor.scalars(self.metrics))
        return out

    def stop(self) -> None:
        """Remove the monitors' hooks (their history stays readable)."""
        for monitor in self.monitors:
            monitor.detach()
