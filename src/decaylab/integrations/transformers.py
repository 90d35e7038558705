"""DecayMonitor and the doctor in a transformers ``Trainer``: :class:`DecayMonitorCallback`.

::

    from decaylab.integrations.transformers import DecayMonitorCallback

    trainer = transformers.Trainer(model, args, train_dataset=data, callbacks=[DecayMonitorCallback()])
    trainer.train()

When training starts (``on_train_begin``: the Trainer has built its optimizer) the callback
attaches a :class:`~decaylab.diagnostics.monitor.DecayMonitor` to the optimizer (unwrapped from accelerate's
``AcceleratedOptimizer``) and runs :func:`decaylab.doctor` over ``state.max_steps`` steps; findings
of severity error and warning are emitted with :func:`warnings.warn` as
:class:`~decaylab.integrations.DecayDoctorWarning`, and all stay on ``callback.findings``. At each of
the Trainer's logging steps (``on_log``) with a new monitor record, the per-tensor scalars
(``decay_<field>/<param>``, see :meth:`~decaylab.diagnostics.monitor.DecayMonitor.scalars`) are added to the
``logs`` dict and to the entry the Trainer just appended to ``state.log_history``.

The Trainer calls its reporting callbacks (``report_to``: TensorBoard, W&B, ...) before the ones
passed in ``callbacks=``, so they have already written ``logs`` when this callback adds to it;
callbacks after this one see the scalars. To send them to a reporter, move it behind this callback:
``trainer.add_callback(trainer.pop_callback(TensorBoardCallback))`` (``add_callback`` appends).
"""

from __future__ import annotations

import warnings

from decaylab._extras import needs

with needs("transformers", "decaylab.integrations.transformers"):
    from transformers import TrainerCallback

from decaylab.integrations._callback import DecayDoctorWarning, MonitorCallbackCore

__all__ = ["DecayMonitorCallback"]


class DecayMonitorCallback(MonitorCallbackCore, TrainerCallback):
    """A transformers ``TrainerCallback`` that monitors weight decay per tensor and runs the doctor
    at the start of training; arguments as
    :class:`~decaylab.integrations._callback.MonitorCallbackCore` (``every``, ``include``,
    ``max_records``, ``metrics``, ``doctor``)."""

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if model is None or optimizer is None:
            raise ValueError("DecayMonitorCallback needs the Trainer's model and optimizer in on_train_begin")
        self.start(model, optimizer, state.max_steps,
                   lambda message: warnings.warn(message, DecayDoctorWarning, stacklevel=2),
                   scheduler=kwargs.get("lr_scheduler"))

    def on_log(self, args, state, control, logs=None, **kwargs):
        scalars = self.new_scalars()
        if not scalars:
            return
        if logs is not None:
            logs.update(scalars)
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(scalars)

    def on_train_end(self, args, state, control, **kwargs):
        self.stop()
