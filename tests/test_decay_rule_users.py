"""Everything that needs to know what decays sees the trainers' decayed set (:class:`decaylab.groups.DecayRule`):
an lr × λ map's regime and predicted slope, the equilibrium check, the doctor, the penalties and the evidence
prior — on models where a shape rule (``p.dim() >= 2``) gives another answer (an embedding, a forced bias, a
free vector) and on tied weights."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from decaylab.batched.trainer import TrainConfig
from decaylab.diagnostics.doctor import doctor
from decaylab.evidence.prior import prior_structure
from decaylab.groups import DecayRule
from decaylab.maps.lr_map import lr_decay_map
from decaylab.maps.regimes import equilibrium_check
from decaylab.maps.theory import detect_regime, predicted_slope
from decaylab.penalty import l1_penalty, l2_penalty

IDS = 10     # ids the data uses; the embedding has more rows, which never get a gradient


class TaggedNet(nn.Module):
    """Two features through scale-invariant layers (bias-free Linear → affine-free LayerNorm), a 400-row
    embedding of a third (integer) feature added to the logits (800 elements, not scale-invariant: a shape
    rule counts it, the trainers do not decay it), and a free vector ``offset`` that gets a zero gradient
    (so only decay moves it; the trainers decay it only when ``decay_names`` says so)."""

    def __init__(self, vocab: int = 400):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(2, 16, bias=False), nn.LayerNorm(16, elementwise_affine=False), nn.ReLU(),
                                  nn.Linear(16, 16, bias=False), nn.LayerNorm(16, elementwise_affine=False), nn.ReLU())
        self.head = nn.Linear(16, 2)
        self.emb = nn.Embedding(vocab, 2)
        self.offset = nn.Parameter(torch.ones(8))

    def forward(self, x):
        return self.head(self.body(x[:, :2])) + self.emb(x[:, 2].long()) + 0.0 * self.offset.sum()


def _data(n: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(n, 2, generator=gen)
    ids = torch.randint(0, IDS, (n, 1), generator=gen).double()
    return torch.cat([features.double(), ids], 1), (features.sum(1) > 0).long()


@pytest.fixture(scope="module")
def task():
    return _data(64, 0), _data(64, 1)


# the trainers' options → the parameters they decay
OPTIONS = {
    "default (embedding not decayed)": {},
    "decay_names forces a bias and the free vector": {"decay_names": ("*bias", "offset")},
    "decay_embeddings": {"decay_embeddings": True},
    "decay_biases": {"decay_biases": True},
}


def _trainer_decays(options) -> set[str]:
    torch.manual_seed(0)
    decays = TrainConfig.from_options(optimizer="adamw", decay_scaling="schedule", **options).decayed_names(TaggedNet())
    return {n for n, d in decays.items() if d}


def _map(task, options):
    """A 3 × 3 AdamW map of TaggedNet, one seed, one epoch: enough for its regime and decay rule."""
    (X, y), test = task
    return lr_decay_map(TaggedNet, (X, y), test, optimizer="adamw", decay_scaling="schedule", lrs=[1e-3, 1e-2, 1e-1],
                        decays=[1e-3, 1e-2, 1e-1], seeds=(0,), epochs=1, batch_size=64, dtype=torch.float64, **options)


@pytest.mark.parametrize("case", OPTIONS)
def test_a_maps_regime_and_predicted_slope_see_the_trainers_decayed_set(case, task):
    options = OPTIONS[case]
    m = _map(task, options)
    decayed = _trainer_decays(options)
    assert set(m.regime["scale_invariant"]) == decayed
    sizes = dict((n, p.numel()) for n, p in TaggedNet().named_parameters())
    invariant = {"body.0.weight", "body.3.weight", "offset"}            # offset: scaled by 0 in forward
    fraction = sum(sizes[n] for n in decayed & invariant) / sum(sizes[n] for n in decayed)
    assert m.regime["invariant_fraction"] == pytest.approx(fraction)
    regime = "equilibrium" if fraction > 0.5 else "fixed-point"
    assert m.regime["regime"] == regime
    assert m.predicted_slope == predicted_slope("adamw", "schedule", regime)
    assert {n for n, d in m.decay_rule.decays(TaggedNet()).items() if d} == decayed


def test_the_embedding_changes_the_regime_a_shape_rule_would_report(task):
    # the point of the test above: counting the 800-element embedding (as `dim() >= 2` does) flips the regime
    (X, _), _ = task
    net = TaggedNet()
    assert detect_regime(net, X[:32])["regime"] == "equilibrium"
    assert detect_regime(net, X[:32], decay_rule=DecayRule(decay_embeddings=True))["regime"] == "fixed-point"


@pytest.mark.parametrize("case", OPTIONS)
def test_the_equilibrium_check_decays_what_the_map_decayed(case, task):
    # Zero-gradient tensors move only by decay under AdamW (m = v = 0): the embedding's rows the data never
    # uses, and the free vector `offset`. Each must move iff the trainer decays it.
    options = OPTIONS[case]
    m = _map(task, options)
    (X, y), _ = task
    built = []

    def factory():
        built.append(TaggedNet().double())
        built.append({n: p.detach().clone() for n, p in built[-1].named_parameters()})
        return built[-2]

    check = equilibrium_check(factory, SimpleNamespace(X=X, y=y), optimizer="adamw", decay_scaling="schedule",
                              lr=1e-2, decay=0.1, epochs=2, batch_size=32, momentum=0.9, decay_rule=m.decay_rule)
    model, before = built
    decayed = _trainer_decays(options)
    assert check["param"] == next(n for n, _ in model.named_parameters() if n in decayed)   # the first decayed
    unused_rows = slice(IDS, None)
    moved = {"emb.weight": not torch.equal(model.emb.weight.detach()[unused_rows], before["emb.weight"][unused_rows]),
             "offset": not torch.equal(model.offset.detach(), before["offset"])}
    assert moved == {"emb.weight": "emb.weight" in decayed, "offset": "offset" in decayed}
    # where decayed, by exactly the decay: (1 − s_t·λ) per step with s_t = 1 at a constant lr, 4 steps
    if moved["offset"]:
        torch.testing.assert_close(model.offset.detach(), before["offset"] * 0.9 ** 4, rtol=1e-12, atol=0)


def test_detect_regime_refuses_a_rule_and_decay_biases_together(task):
    (X, _), _ = task
    with pytest.raises(ValueError, match="decay_biases must be False when decay_rule is given"):
        detect_regime(TaggedNet(), X[:8], decay_biases=True, decay_rule=DecayRule())
    with pytest.raises(TypeError, match="decay_rule must be a decaylab.groups.DecayRule"):
        detect_regime(TaggedNet(), X[:8], decay_rule={"decay_names": ["*"]})


# --- tied and shared weights: the doctor, the penalties and the evidence prior follow DecayRule ------------

class TiedLM(nn.Module):
    """An embedding tied to the output layer (the tensor has a decaying and a non-decaying owner), a Linear
    used twice (one module under two names) and a LayerNorm."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(12, 6)
        self.norm = nn.LayerNorm(6)
        self.mix = nn.Linear(6, 6)
        self.mix_again = self.mix
        self.head = nn.Linear(6, 12, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, ids):
        return self.head(self.mix_again(torch.tanh(self.mix(self.norm(self.emb(ids))))))


TIED_OPTIONS = {
    "default": {},
    "decay_embeddings": {"decay_embeddings": True},
    "decay_names on the tied name": {"decay_names": ("head.weight",)},
    "no_decay_names on the shared module's second name": {"no_decay_names": ("*bias", "mix_again.*"),
                                                          "decay_embeddings": True},
}


@pytest.mark.parametrize("case", TIED_OPTIONS)
def test_doctor_and_prior_agree_with_the_rule_on_tied_weights(case):
    options = TIED_OPTIONS[case]
    torch.manual_seed(0)
    model = TiedLM()
    rule = DecayRule(**options)
    decays = rule.decays(model)
    assert list(decays) == ["emb.weight", "norm.weight", "norm.bias", "mix.weight", "mix.bias"]  # each tensor once
    spared = {n for n, d in decays.items() if not d}
    # the doctor: the rule's own groups are clean; decaying everything flags exactly what the rule spares
    clean = doctor(model, torch.optim.AdamW(rule.groups(model, 0.01), lr=1e-3), total_steps=1000, **options)
    assert not {"decay-on-no-decay", "decay-on-embeddings", "missing-params"} & {f.code for f in clean}
    flagged = doctor(model, torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01), total_steps=1000,
                     **options)
    assert {n for f in flagged if f.code in ("decay-on-no-decay", "decay-on-embeddings") for n in f.params} == spared
    # the evidence prior: a learned precision exactly for the decayed tensors
    prior = prior_structure(model, True, **options)
    assert {n for n, g in prior.group_of.items() if g is not None} == set(decays) - spared
    assert prior.names == list(decays)


def test_penalties_on_a_module_take_the_rules_decayed_set_once_each():
    torch.manual_seed(0)
    model = TiedLM().double()
    decayed = [d.param for d in DecayRule().classify(model) if d.decay]
    assert [p is model.mix.weight for p in decayed] == [True]      # the tied embedding follows the embedding
    assert l2_penalty(model, 0.5).item() == pytest.approx(0.5 * float((model.mix.weight.detach() ** 2).sum()))
    assert l1_penalty(model, 0.5).item() == pytest.approx(0.5 * float(model.mix.weight.detach().abs().sum()))
