"""What :class:`~decaylab.diagnostics.monitor.DecayMonitor` records per tensor and step: the measured
metrics, then the parameter group's settings and what they predict."""

#: what is measured per tensor and step
METRICS = ("weight_norm", "grad_norm", "update_ratio", "angle", "max_abs", "spectral_norm")
#: what each record holds: the metrics, then the group's settings and its predictions for the tensor
FIELDS = (*METRICS, "lr", "weight_decay", "predicted_angle", "max_abs_bound", "predicted_norm", "spectral_bound")
