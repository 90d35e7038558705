"""The batched engine: many members (λ × lr × seed × fold) of one model trained at once, and the
members trained alone that every batched path is checked against.

- :mod:`.members` — the vocabulary: a :class:`~.members.Member`, the :class:`~.members.TrainConfig` all
  members share, the :class:`~.members.MemberResult` each ends with, the losses;
- :mod:`.epochs` — which rows each member trains on, in which order (identical in every trainer);
- :mod:`.alone` — one member at a time, plain autograd and decaylab's optimizers (the reference);
- :mod:`.trainer` — :func:`~.trainer.train_batched`: all members as one stacked model;
- :mod:`.stacked`, :mod:`.stacked_linear`, :mod:`.stacked_layers` — the stacked model: the hand-written
  fast path for plain MLPs and the ``torch.func.vmap`` path;
- :mod:`.folded` — the folded path: members folded into the batch dimension of the model's own forward
  (conv, BatchNorm, attention, embeddings, norms);
- :mod:`.one_model` — one model on the engine's kernels with λ settable between epochs (the online evidence);
- :mod:`.chunking` — how many members fit one chunk under the memory budget;
- :mod:`.planning` — which path a sweep takes (auto's timing probe), chunk sizes, and the path line;
- :mod:`._torch_internals` — the semi-internal torch ops the engine uses, in one place.
"""
