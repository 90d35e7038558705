"""DecayMonitor and the doctor inside the training frameworks people use, as their own callbacks.

- :mod:`decaylab.integrations.lightning`: ``DecayMonitorCallback``, a ``lightning.pytorch``
  ``Callback`` (``pip install 'decaylab[lightning]'``);
- :mod:`decaylab.integrations.transformers`: ``DecayMonitorCallback``, a ``transformers``
  ``TrainerCallback`` (``pip install 'decaylab[transformers]'``).

Both attach a :class:`~decaylab.diagnostics.monitor.DecayMonitor` to the trainer's optimizer when training
starts, run :func:`decaylab.doctor` there (findings of severity error and warning become
:class:`DecayDoctorWarning` warnings; all are kept on ``callback.findings``) and log the monitor's
per-tensor scalars (:meth:`~decaylab.diagnostics.monitor.DecayMonitor.scalars`) through the framework's own
loggers. Importing this package imports neither framework; importing a submodule whose framework is
missing raises :class:`decaylab._extras.MissingExtra` naming the ``pip install`` that fixes it.
"""

from decaylab.integrations._callback import DecayDoctorWarning

__all__ = ["DecayDoctorWarning"]
