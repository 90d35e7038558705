"""What decay is doing, read from a model, its optimizer and its training run.

- :mod:`.doctor` — :func:`~.doctor.doctor`: misconfigured decay found before training, with the fix;
- :mod:`.monitor` — :class:`~.monitor.DecayMonitor`: per-layer ‖w‖, ‖Δw‖/‖w‖ and angle against prediction;
- :mod:`.optimizer_decay` — how an optimizer's param group decays (coupled or decoupled and in which form, s_t,
  λ), from one table of torch's, decaylab's and the schedule-free optimizers;
- :mod:`.bounds` — what decay predicts and bounds under Muon and Lion (equilibrium, ‖w‖∞, spectral norm);
- :mod:`.scheduler_length` — a run's length and peak lr read from torch's and transformers' schedulers;
- :mod:`.penalty_graph` — an L2 penalty found in the loss's autograd graph (double decay);
- :mod:`._thinned` — the monitor's bounded history.
"""
