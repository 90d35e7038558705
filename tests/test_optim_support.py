"""Shared fixtures of the optimizer tests (no tests here): imported by tests/test_optim_*.py."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny tensors: one intra-op thread (2 threads on a loaded 2-core box run ~40x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
