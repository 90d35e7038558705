"""Weight-decay optimizers: SGD/SGDW, Adam/AdamW and Muon as drop-in ``torch.optim`` optimizers, and Lion.

- :class:`SGD`, :class:`Adam`: coupled L2 decay, the same updates as torch's.
- :class:`SGDW`, :class:`AdamW`: decoupled decay ``w ← w − s_t·λ·w`` with
  ``decay_scaling`` "lr" (s_t = lr_t, torch's AdamW), "schedule" (s_t = lr_t/lr_0)
  or "corrected" (s_t = lr_t²/lr_0, AdamC), and the variants ``cautious`` and
  ``l1_decay`` (proximal L1).
- :class:`Muon`: ``torch.optim.Muon``'s updates with the decay scalings, ``cautious``,
  ``l1_decay``, the Moonlight update-RMS rule (``update_rms``) and conv weights (``flatten``).
- :class:`Lion`: Chen et al. 2023's Lion with decoupled decay in every scaling, ``cautious``, ``l1_decay``.
- :class:`MuonAdamW`: one optimizer, Muon for the hidden matrices and AdamW for the rest;
  :func:`muon_param_groups` (with :class:`MuonRule`) splits a model into its groups.
- :mod:`decaylab.optim.functional`: the single-tensor update math, reusable on
  stacked parameters of many model copies.
"""

from decaylab.optim import functional
from decaylab.optim._decay import DECAY_SCALINGS, timescale_weight_decay
from decaylab.optim.adam import Adam, AdamW
from decaylab.optim.combined import MuonAdamW
from decaylab.optim.lion import Lion
from decaylab.optim.muon import Muon
from decaylab.optim.muon_groups import MuonRule, muon_param_groups
from decaylab.optim.sgd import SGD, SGDW

__all__ = ["SGD", "SGDW", "Adam", "AdamW", "Muon", "Lion", "MuonAdamW", "MuonRule", "muon_param_groups",
           "functional", "DECAY_SCALINGS", "timescale_weight_decay"]
