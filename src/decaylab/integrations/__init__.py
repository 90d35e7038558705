"""DecayMonitor and the doctor inside the training frameworks people use, as their own callbacks.

- :mod:`decaylab.integrations.lightning`: ``DecayMonitorCallback``, a ``lightning.pytorch``
  ``Callback`` (``pip install 'decaylab[lightning]'``);
- :mod:`decaylab.integrations.transformers`: ``DecayMonitorCallback``, a ``transformers``
  ``TrainerCallback`` (``pip install 'decaylab[transformers]'``).

Both attach a :class:`~decaylab.diagnostics.monitor.DecayMonitor` to the trainer's optimizer when training
starts, run :func:`decaylab.doctor` there (findings of severity error and warning become
:class:`DecayDoctorWarning` warnings; all are kept on ``callback.findings``) and log the monitor's
per-tensor scalars (:meth:`~decaylab.diagnostics.monitor.DecayMonitor.scalars`) through the framework's own
loggers. A param group added during training (``optimizer.add_param_group``, e.g. unfreezing a
backbone) is monitored from the next step on, and the doctor runs again over the optimizer with it
(its new findings are reported). The LR scheduler is the user's to extend: torch's ``LambdaLR``
(what transformers' Trainer builds) refuses a group added after it (torch 2.13: ``scheduler.step()``
raises ``ValueError``) unless the group's base lr is appended to ``scheduler.base_lrs`` and its
factor to ``scheduler.lr_lambdas``.

Muon with its AdamW companion: both frameworks take one optimizer, so give them
:class:`decaylab.optim.MuonAdamW` (Muon for the hidden matrices, AdamW for the rest; one
``state_dict``, so checkpoints and resuming work as for any optimizer); the callbacks read each of
its groups with its own half's lr, λ and decay (decoupled in both halves)::

    from decaylab.optim import MuonAdamW, muon_param_groups

    def muon_adamw(model):
        return MuonAdamW(muon_param_groups(model), muon=dict(lr=0.02, weight_decay=0.01),
                         adamw=dict(lr=3e-4, betas=(0.9, 0.95), weight_decay=0.01))

    # transformers: the Trainer builds its LR scheduler (lr_scheduler_type, warmup) over it
    trainer = transformers.Trainer(model, args, train_dataset=data, optimizers=(muon_adamw(model), None),
                                   callbacks=[DecayMonitorCallback()])

    # Lightning
    def configure_optimizers(self):
        opt = muon_adamw(self)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": CosineAnnealingLR(opt, T_max=...),
                                                   "interval": "step"}}

Each group keeps its own lr: a scheduler scales every group's ``initial_lr``, so
``TrainingArguments.learning_rate``, ``weight_decay`` and the ``adam_*`` options are not used
(transformers uses them only for the optimizer it builds itself). Details, resuming included, in
each submodule.

Importing this package imports neither framework; importing a submodule whose framework is
missing raises :class:`decaylab._extras.MissingExtra` naming the ``pip install`` that fixes it.
"""

from decaylab.integrations._callback import DecayDoctorWarning

__all__ = ["DecayDoctorWarning"]
