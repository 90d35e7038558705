"""DecayMonitor and the doctor in a Lightning ``Trainer``: :class:`DecayMonitorCallback`.

::

    from decaylab.integrations.lightning import DecayMonitorCallback

    trainer = lightning.Trainer(max_steps=10_000, callbacks=[DecayMonitorCallback()])
    trainer.fit(module)

When training starts (``on_train_start``, the optimizers exist) the callback attaches a
:class:`~decaylab.diagnostics.monitor.DecayMonitor` to each of the module's optimizers (``trainer.optimizers``: one,
or a GAN's two) and runs :func:`decaylab.doctor` over them together for ``trainer.estimated_stepping_batches``
steps; findings of
severity error and warning go through Lightning's ``rank_zero_warn`` (once, on rank 0) as
:class:`~decaylab.integrations.DecayDoctorWarning`, and all stay on ``callback.findings``. After each
training batch at Lightning's logging cadence (``global_step`` a multiple of the Trainer's
``log_every_n_steps``) with a new monitor record, the per-tensor scalars
(``decay_<field>/<param>``, see :meth:`~decaylab.diagnostics.monitor.DecayMonitor.scalars`) go to every logger
of the Trainer (``logger.log_metrics(..., step=global_step)``: TensorBoard, CSV, W&B, ...).
A param group added during training (``optimizer.add_param_group`` in a hook or a training step) is
monitored from the next optimizer step on, and after that step's batch the doctor runs again with it
and warns about what it had not reported.

:class:`decaylab.optim.MuonAdamW` is one optimizer: ``configure_optimizers`` returns it like any
other (with a scheduler as ``{"optimizer": opt, "lr_scheduler": {...}}``), Lightning's checkpoints hold
its one ``state_dict`` and ``trainer.fit(module, ckpt_path=...)`` continues the run exactly from an
end-of-epoch checkpoint (tested, without shuffling or dropout). Lightning's checkpoints hold no RNG
state, so a shuffled order or dropout after resuming are new draws, and from a mid-epoch checkpoint
a dataloader without ``state_dict``/``load_state_dict`` does not continue where it stopped
(Lightning warns): the continuation is then a valid run, not the same numbers.
"""

from __future__ import annotations

from decaylab._checks import InputError
from decaylab._extras import needs

with needs("lightning", "decaylab.integrations.lightning"):
    from lightning.pytorch.callbacks import Callback
    from lightning.pytorch.utilities import rank_zero_warn

from decaylab.integrations._callback import DecayDoctorWarning, MonitorCallbackCore

__all__ = ["DecayMonitorCallback"]


class DecayMonitorCallback(MonitorCallbackCore, Callback):
    """A Lightning ``Callback`` that monitors weight decay per tensor and runs the doctor at the
    start of training; arguments as :class:`~decaylab.integrations._callback.MonitorCallbackCore`
    (``every``, ``include``, ``max_records``, ``metrics``, ``doctor``)."""

    def on_train_start(self, trainer, pl_module) -> None:
        if not trainer.optimizers:
            raise InputError("DecayMonitorCallback needs an optimizer: configure_optimizers returned none")
        configs = trainer.lr_scheduler_configs
        self.start(pl_module, list(trainer.optimizers), trainer.estimated_stepping_batches,
                   lambda message: rank_zero_warn(message, category=DecayDoctorWarning),
                   scheduler=configs[0].scheduler if configs else None)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.check_groups()
        if trainer.global_step % max(1, trainer.log_every_n_steps) != 0 or not trainer.loggers:
            return
        scalars = self.new_scalars()
        if scalars:
            for logger in trainer.loggers:
                logger.log_metrics(scalars, step=trainer.global_step)

    def on_train_end(self, trainer, pl_module) -> None:
        self.stop()
