"""Sweeps of conv/BatchNorm/embedding models: integer inputs, auto's engine choice, chunks from a memory
budget, the path line."""

import pytest
import torch
from torch import nn

import decaylab
from decaylab.batched import chunking
from decaylab.batched.chunking import member_bytes, plan_chunks
from decaylab.batched.planning import ProbeTimes, choose_engine, plan_sweep
from decaylab.batched.trainer import Member, TrainConfig

VOCAB, TOKENS = 9, 5


def tokens(n=48):
    gen = torch.Generator().manual_seed(0)
    X = torch.randint(0, VOCAB, (n, TOKENS), generator=gen)
    return X, (X[:, 0] > X[:, 1]).long()


class TokenModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 4)
        self.norm = nn.LayerNorm(4)
        self.out = nn.Linear(4 * TOKENS, 2)

    def forward(self, x):
        return self.out(self.norm(self.embed(x)).flatten(1))


def conv_bn():
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(32, 2))


def dropout_mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(TOKENS, 6), nn.Dropout(0.3), nn.Linear(6, 2))


def test_integer_token_inputs_give_the_same_members_in_every_engine():
    X, y = tokens()
    results = {engine: decaylab.sweep(TokenModel, (X.numpy(), y.numpy()), [1e-4, 1e-1], folds=2, epochs=2,
                                      batch_size=8, engine=engine, dtype=torch.float64)
               for engine in ("batched", "sequential", "auto")}
    sequential = results["sequential"]
    assert len(sequential.table) == 4 and not sequential.n_diverged
    for engine, result in results.items():
        assert result.path and "\n" not in result.path
        for a, b in zip(result.table, sequential.table):
            assert a["key"] == b["key"] and a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-10), engine


def test_engines_agree_on_a_batchnorm_conv_sweep():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(40, 1, 4, 4, generator=gen, dtype=torch.float64)
    y = (X.sum((1, 2, 3)) > 0).long()
    kwargs = dict(folds=2, epochs=3, batch_size=6, optimizer="sgd", momentum=0.9, dtype=torch.float64, lr=0.05)
    batched = decaylab.sweep(conv_bn, (X, y), [0.0, 1e-2], engine="batched", **kwargs)
    alone = decaylab.sweep(conv_bn, (X, y), [0.0, 1e-2], engine="sequential", **kwargs)
    for a, b in zip(alone.table, batched.table):
        assert b["val_loss"] == pytest.approx(a["val_loss"], abs=1e-10)
    assert batched.path.startswith("batched, folded: ") and "BatchNorm2d" in batched.path
    assert alone.path == "sequential: engine='sequential' was asked for"


def test_auto_sends_a_model_with_dropout_to_sequential_and_says_why():
    X, y = tokens()
    result = decaylab.sweep(dropout_mlp, (X.double(), y), [0.0, 1e-2], folds=2, epochs=1, engine="auto")
    assert result.engine == "sequential"
    assert result.path.startswith("sequential: ") and "Dropout(p=0.3)" in result.path


def test_auto_takes_the_fast_path_for_a_plain_mlp_and_probes_other_models():
    X, y = tokens()
    mlp = decaylab.sweep("mlp", (X, y), [0.0, 1e-2], folds=2, epochs=1, engine="auto", hidden=(8,))
    assert mlp.engine == "batched" and mlp.path.startswith("auto → batched, fast: plain MLP")
    probed = decaylab.sweep(TokenModel, (X, y), [0.0, 1e-2], folds=2, epochs=1, engine="auto")
    assert probed.engine in ("batched", "sequential")
    assert "median of 3 timings after a warm-up, 4 members stacked vs one at a time" in probed.path
    assert "throughput" in probed.path and "\n" not in probed.path


def times(batched, sequential, members=8):
    return ProbeTimes(tuple(batched), tuple(sequential), members)


def test_auto_prefers_sequential_unless_batched_wins_by_the_margin():
    # seconds per member-step; the median decides, so one outlier timing (a busy machine) cannot
    assert choose_engine(times([0.010, 0.011, 0.5], [0.020, 0.02, 0.001]))[0] == "batched"
    engine, why = choose_engine(times([0.010, 0.010, 0.010], [0.0105, 0.0108, 0.0109]))
    assert engine == "sequential"        # 1.08× faster is not a clear win
    assert why.startswith("the batched engine's throughput was 1.08× the sequential engine's, below the 1.1× it needs")
    engine, why = choose_engine(times([0.010] * 3, [0.0112] * 3))
    assert engine == "batched" and why.startswith("1.12× the sequential engine's throughput (median of 3 timings")
    assert choose_engine(times([0.030] * 3, [0.017] * 3))[0] == "sequential"      # the attention case of issue 11
    assert choose_engine(times([0.010] * 3, [0.0105] * 3), margin=1.0)[0] == "batched"


@pytest.mark.parametrize("batched, engine", [(0.001, "batched"), (0.1, "sequential")])
def test_plan_sweep_runs_the_engine_the_probe_chose(monkeypatch, batched, engine):
    from decaylab.batched import planning

    X, y = tokens()
    members = [Member(lam, 0.1, train_index=range(0, 40)) for lam in (0.0, 1e-3, 1e-2)]
    seen = []
    monkeypatch.setattr(planning, "probe_times", lambda f, X, y, config, members, device:
                        seen.append(len(members)) or times([batched] * 3, [0.01] * 3, len(members)))
    plan = plan_sweep(TokenModel, X, y, TrainConfig(batch_size=8), members, "auto", None, "cpu")
    assert seen == [3]                                    # probed at the chunk size the sweep will run
    assert plan.engine == engine and (plan.chunk_size == 3 if engine == "batched" else plan.chunk_size is None)
    assert plan.report.startswith(f"auto → {engine}") and "folded" in plan.report


def test_auto_probes_with_the_threads_and_members_a_worker_process_will_have(monkeypatch):
    import os

    from decaylab.batched import planning

    X, y = tokens()
    members = [Member(lam, 0.1, train_index=range(0, 40)) for lam in (0.0, 1e-3, 1e-2, 1e-1)]
    seen = []
    monkeypatch.setattr(planning, "probe_times", lambda f, X, y, config, members, device:
                        seen.append((len(members), torch.get_num_threads())) or times([0.001] * 3, [0.01] * 3, 2))
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    before = torch.get_num_threads()
    plan = plan_sweep(TokenModel, X, y, TrainConfig(batch_size=8), members, "auto", None, "cpu", workers=4)
    assert seen == [(1, 2)] and torch.get_num_threads() == before       # 8 cores ÷ 4 workers, restored after
    assert plan.chunk_size == 1 and "4 chunks of ≤ 1 members" in plan.report


def test_plan_chunks_fits_the_budget_and_splits_a_chunk_that_would_not_fit():
    assert plan_chunks(32, per_member=100, budget=10_000).size == 32
    plan = plan_chunks(32, per_member=1000, budget=10_000)
    assert (plan.size, plan.chunks, plan.split) == (10, 4, False)
    plan = plan_chunks(32, per_member=1000, budget=10_000, chunk_size=16)
    assert (plan.size, plan.chunks, plan.split) == (10, 4, True)
    assert "chunk_size=16 would not fit and was split" in plan.describe()
    assert plan_chunks(3, per_member=10**9, budget=10).size == 1     # one member is the least a chunk holds
    assert plan_chunks(32, per_member=1000, budget=10_000, chunk_size=4).size == 4


def test_plan_chunks_shares_members_and_budget_between_worker_processes():
    plan = plan_chunks(32, per_member=100, budget=10_000, workers=2)
    assert (plan.size, plan.chunks, plan.budget) == (16, 2, 5_000)       # an equal share of members each
    assert "2 chunks of ≤ 16 members" in plan.describe() and "per worker, 2 worker processes" in plan.describe()
    plan = plan_chunks(32, per_member=1000, budget=10_000, workers=2)
    assert (plan.size, plan.chunks) == (5, 7)                            # each process has half the budget
    assert plan_chunks(3, per_member=100, budget=10_000, workers=4).size == 1


def test_member_bytes_counts_state_and_saved_activations():
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3)).double()
    params = sum(p.numel() for p in model.parameters()) * 8
    small = member_bytes(model, torch.randn(4, 10, dtype=torch.float64), optimizer_states=2)
    large = member_bytes(model, torch.randn(400, 10, dtype=torch.float64), optimizer_states=2)
    # parameters, gradients, two Adam moments, and the idle members' copy of parameters and moments
    assert small >= 7 * params
    assert large - small >= 396 * (10 + 20 + 3) * 8           # saved input, hidden activation and output grow with rows
    assert member_bytes(model, torch.randn(4, 10, dtype=torch.float64), optimizer_states=0) == small - 2 * 2 * params


def test_sweep_splits_chunks_to_the_memory_budget(monkeypatch):
    X, y = tokens()
    torch.manual_seed(0)
    one = member_bytes(TokenModel().float(), X[:8], optimizer_states=2)
    monkeypatch.setattr(chunking, "memory_budget", lambda device: 3 * one)
    sizes = []
    import decaylab.sweeps.engines as engines

    real = engines.train_batched
    monkeypatch.setattr(engines, "train_batched", lambda f, X, y, members, *a, **k: sizes.append(len(members))
                        or real(f, X, y, members, *a, **k))
    result = decaylab.sweep(TokenModel, (X, y), [0.0, 1e-3, 1e-2, 1e-1], folds=2, epochs=1, batch_size=8,
                            engine="batched", chunk_size=8)
    assert sizes == [3, 3, 2]
    assert "3 chunks of ≤ 3 members" in result.path and "chunk_size=8 would not fit and was split" in result.path


def test_plan_sweep_reports_sequential_for_a_model_it_cannot_batch():
    X, y = tokens()
    members = [Member(0.0, 0.1), Member(0.1, 0.1)]
    plan = plan_sweep(dropout_mlp, X.double(), y, TrainConfig(dtype=torch.float64), members, "auto", None, "cpu")
    assert (plan.engine, plan.chunk_size) == ("sequential", None)
    assert plan.report == "sequential: 2 is Dropout(p=0.3) (random masks differ from a run alone)"
