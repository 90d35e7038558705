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

A parameter group added during training (by another callback, ``optimizer.add_param_group``) is
monitored from the next optimizer step on, and at that step's end (``on_step_end``) the doctor runs
again with it and warns about what it had not reported.

One optimizer for the whole model: pass :class:`decaylab.optim.MuonAdamW` as the Trainer's
optimizer, ``optimizers=(MuonAdamW(muon_param_groups(model), muon=..., adamw=...), None)``; the
Trainer then builds its LR scheduler over it (the ``None``; each group's lr is scaled from its own
``initial_lr``, so Muon's 0.02 and AdamW's 3e-4 follow one schedule) and uses neither
``learning_rate`` nor ``weight_decay`` from ``TrainingArguments``. Build the model first, the
optimizer over its parameters, then the Trainer (``model_init`` does not take ``optimizers``).
``resume_from_checkpoint`` continues such a run bit for bit (tested on CPU with dropout on): build
the same model (any weights: the checkpoint's are loaded into the same tensors) and optimizer with the
same ``TrainingArguments.seed``; the Trainer loads ``optimizer.pt`` and ``scheduler.pt`` into them,
fast-forwards the dataloader past the batches already trained in the current epoch (accelerate's
seedable sampler, the default, draws each epoch's order from the seed and the epoch, so the
order is the same), and restores the Python, NumPy and torch RNG states saved with the checkpoint
after that fast-forward, so dropout draws continue where they stopped. ``ignore_data_skip=True``
gives up the fast-forward and with it the identical continuation.

The Trainer calls its reporting callbacks (``report_to``: TensorBoard, W&B, ...) before the ones
passed in ``callbacks=``, so they have already written ``logs`` when this callback adds to it;
callbacks after this one see the scalars. To send them to a reporter, move it behind this callback:
``trainer.add_callback(trainer.pop_callback(TensorBoardCallback))`` (``add_callback`` appends).
"""

from __future__ import annotations

import warnings

from decaylab._checks import InputError
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
            raise InputError("DecayMonitorCallback needs the Trainer's model and optimizer in on_train_begin")
        self.start(model, optimizer, state.max_steps,
                   lambda message: warnings.warn(message, DecayDoctorWarning, stacklevel=2),
                   scheduler=kwargs.get("lr_scheduler"))

    def on_step_end(self, args, state, control, **kwargs):
        self.check_groups()

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
