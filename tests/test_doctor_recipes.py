"""The doctor on the recipes people run: run length from LR schedulers (torch's and transformers'),
schedule-scaled optimizers re-created mid-run, double decay found in the loss's graph, and tiny
GPT-2 / Llama / BERT set up by transformers' Trainer."""

import functools
import warnings

import pytest
import torch
from torch import nn
from torch.optim import lr_scheduler as sched

import decaylab
import decaylab.optim as dopt
from decaylab.diagnostics.doctor import doctor
from decaylab.diagnostics.penalty_graph import l2_penalized_parameters
from decaylab.diagnostics.scheduler_length import run_length
from decaylab.groups import param_groups
from decaylab.penalty import l2_penalty


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.norm(torch.relu(self.lin(x))))


def _opt(lr=1e-3):
    return torch.optim.AdamW([nn.Parameter(torch.zeros(2))], lr=lr)


def test_run_length_of_torch_schedulers():
    assert run_length(None) is None
    assert run_length(sched.OneCycleLR(_opt(), max_lr=0.1, total_steps=700)) == 700
    assert run_length(sched.CosineAnnealingLR(_opt(), T_max=900)) == 900
    assert run_length(sched.PolynomialLR(_opt(), total_iters=400)) == 400
    assert run_length(sched.LinearLR(_opt(), start_factor=1.0, end_factor=0.0, total_iters=300)) == 300
    assert run_length(sched.LinearLR(_opt(), start_factor=0.1, total_iters=50)) is None   # a warm-up: no end
    assert run_length(sched.StepLR(_opt(), step_size=10)) is None
    assert run_length(sched.ExponentialLR(_opt(), gamma=0.99)) is None
    assert run_length(sched.LambdaLR(_opt(), lambda t: 1.0)) is None
    o = _opt()
    seq = sched.SequentialLR(o, [sched.LinearLR(o, 0.1, total_iters=100), sched.CosineAnnealingLR(o, T_max=900)],
                             milestones=[100])
    assert run_length(seq) == 1000
    o = _opt()
    chained = sched.ChainedScheduler([sched.LinearLR(o, 0.1, total_iters=10), sched.CosineAnnealingLR(o, T_max=500)])
    assert run_length(chained) == 500
    assert run_length(decaylab.schedules.CosineWarmRestarts(_opt(), T_0=10)) is None


def test_run_length_of_transformers_schedules():
    import transformers  # the dev extra installs it
    for name in ("linear", "cosine", "cosine_with_restarts", "polynomial", "cosine_with_min_lr"):
        extra = {"scheduler_specific_kwargs": {"min_lr": 1e-5}} if name == "cosine_with_min_lr" else {}
        s = transformers.get_scheduler(name, _opt(), num_warmup_steps=10, num_training_steps=3000, **extra)
        assert run_length(s) == 3000, name
    assert run_length(transformers.get_constant_schedule_with_warmup(_opt(), 10)) is None
    wsd = transformers.get_wsd_schedule(_opt(), 10, num_decay_steps=50, num_stable_steps=100)
    assert run_length(wsd) == 160
    # any functools.partial lr lambda carrying num_training_steps counts
    assert run_length(sched.LambdaLR(_opt(), functools.partial(lambda t, num_training_steps: 1.0,
                                                               num_training_steps=77))) == 77


def test_doctor_reads_the_run_and_the_peak_from_the_scheduler():
    model = Net()
    opt = torch.optim.AdamW(param_groups(model, 0.01), lr=1e-3)
    assert doctor(model, opt) == []          # no run length: nothing to say about τ = 1e5 steps
    cosine = sched.CosineAnnealingLR(opt, T_max=50_000)
    found = doctor(model, opt, scheduler=cosine)
    assert found.codes == ["decay-weak"] and "50000-step run" in found[0].why
    assert doctor(model, opt, total_steps=200_000, scheduler=cosine) == []   # total_steps wins
    # OneCycleLR starts at max_lr/25: the decay is judged at max_lr (τ = 1/(0.1·1) = 10 steps), not 0.004
    model = Net()
    opt = torch.optim.AdamW(param_groups(model, 1.0), lr=0.1)
    one_cycle = sched.OneCycleLR(opt, max_lr=0.1, total_steps=10_000)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.004)
    found = doctor(model, opt, scheduler=one_cycle)
    assert found.codes == ["decay-dominates"] and "τ_iter = 10 steps" in found[0].why
    other = sched.StepLR(_opt(), step_size=1)
    with pytest.raises(ValueError, match="scheduler must schedule the optimizer given to doctor"):
        doctor(model, opt, scheduler=other)


def test_doctor_says_when_a_closure_scheduler_hides_the_run_length():
    model = Net()
    opt = torch.optim.AdamW(param_groups(model, 0.01), lr=1e-3)
    warmup = 100
    closure = sched.LambdaLR(opt, lambda step: min(1.0, (step + 1) / warmup))   # a closure: no length to read
    found = doctor(model, opt, scheduler=closure)
    assert found.codes == ["run-length-unknown"] and found[0].severity == "info", str(found)
    assert "LambdaLR" in found[0].why and "decay-weak" in found[0].why and "0.1% of the run" in found[0].why
    assert "total_steps=" in found[0].fix
    assert "no weight-decay problems found" not in str(found)
    # told the length, the strength checks run and the finding goes away (here: τ = 1e5 steps > the run)
    assert doctor(model, opt, total_steps=50_000, scheduler=closure).codes == ["decay-weak"]
    # nothing decays: no strength check was skipped, nothing to say
    plain = torch.optim.AdamW(Net().parameters(), lr=1e-3, weight_decay=0.0)
    assert "run-length-unknown" not in doctor(model, plain, scheduler=sched.LambdaLR(plain, lambda s: 1.0)).codes


def _cosine(opt, total):
    return sched.LambdaLR(opt, lambda t: 0.5 * (1 + torch.cos(torch.tensor(torch.pi * t / total)).item()))


def test_schedule_optimizer_recreated_mid_run():
    """Re-creating a schedule-scaled optimizer at 1/3 of the peak lr makes lr_0 the current lr: decay 3×."""
    model = Net()
    peak, lam = 3e-3, 1e-4
    first = dopt.AdamW(param_groups(model, lam), lr=peak, decay_scaling="schedule")
    assert doctor(model, first, total_steps=10_000) == []
    recreated = dopt.AdamW(param_groups(model, lam), lr=peak / 3, decay_scaling="schedule")
    for group in recreated.param_groups:
        group["initial_lr"] = peak               # what a scheduler resumed with last_epoch needs
    found = doctor(model, recreated, total_steps=10_000)
    assert found.codes == ["decay-reference-lr"]
    assert "3× stronger" in found[0].why and "'decay_reference_lr': 0.003" in found[0].fix
    # the same read from a scheduler's base_lrs
    plain = dopt.AdamW(param_groups(model, lam), lr=peak / 3, decay_scaling="schedule")
    resumed = sched.LambdaLR(plain, lambda t: 1.0)
    resumed.base_lrs = [peak] * len(plain.param_groups)
    assert doctor(model, plain, total_steps=10_000, scheduler=resumed).codes == ["decay-reference-lr"]
    # the fixes: lr_0 given, or the previous optimizer's state loaded
    given = dopt.AdamW([{**g, "decay_reference_lr": peak} for g in param_groups(model, lam)], lr=peak / 3,
                       decay_scaling="schedule")
    for group in given.param_groups:
        group["initial_lr"] = peak
    assert doctor(model, given, total_steps=10_000) == []
    recreated.load_state_dict(first.state_dict())
    assert doctor(model, recreated, total_steps=10_000) == []
    # lr-scaled decay has no lr_0: a lower current lr is just the schedule
    lr_scaled = dopt.AdamW(param_groups(model, 0.1), lr=peak / 3)
    for group in lr_scaled.param_groups:
        group["initial_lr"] = peak
    assert "decay-reference-lr" not in doctor(model, lr_scaled, total_steps=10_000).codes


@pytest.mark.parametrize("penalty", [
    lambda m: 1e-4 * (m.lin.weight ** 2).sum() + 1e-4 * (m.head.weight ** 2).sum(),
    lambda m: 1e-4 * sum(p.pow(2).sum() for p in (m.lin.weight, m.head.weight)),
    lambda m: 1e-4 * ((m.lin.weight * m.lin.weight).sum() + torch.square(m.head.weight).sum()),
    lambda m: 1e-4 * (m.lin.weight.norm() ** 2 + torch.linalg.vector_norm(m.head.weight) ** 2),
    lambda m: 1e-4 * torch.cat([m.lin.weight.view(-1), m.head.weight.flatten()]).pow(2).sum(),
    lambda m: 1e-4 * torch.dot(m.lin.weight.view(-1), m.lin.weight.view(-1)) + 1e-4 * m.head.weight.T.pow(2).sum(),
    lambda m: l2_penalty(m, 1e-4),
], ids=["pow-operator", "pow", "mul-square", "norm", "cat", "dot-transpose", "l2_penalty"])
def test_double_decay_in_the_loss_graph(penalty):
    model = Net()
    opt = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-3)
    x, y = torch.randn(16, 8), torch.randint(0, 2, (16,))
    data = nn.functional.cross_entropy(model(x), y)
    assert doctor(model, opt, total_steps=50_000, loss=data) == []
    loss = data + penalty(model)
    found = doctor(model, opt, total_steps=50_000, loss=loss)
    assert found.codes == ["double-decay"] and set(found[0].params) == {"lin.weight", "head.weight"}
    loss.backward()                                   # the graph's nodes survive backward
    assert doctor(model, opt, total_steps=50_000, loss=loss).codes == ["double-decay"]
    # no decay in the optimizer: the penalty is the only decay, which is fine
    no_decay = torch.optim.Adam(model.parameters(), lr=1e-3)
    assert "double-decay" not in doctor(model, no_decay, loss=data + penalty(model)).codes


def test_double_decay_ignores_the_data_path_and_undecayed_penalties():
    model = Net()
    opt = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-3)
    x = torch.randn(16, 8)
    # squares of activations (a norm layer's variance, an energy term) and products of weights with data
    out = model(x)
    loss = out.pow(2).mean() + (model.lin(x) * model.lin(x)).mean() + torch.linalg.vector_norm(model.lin(x))
    assert l2_penalized_parameters(loss, list(model.parameters())) == []
    # an L2 term on parameters the optimizer does not decay (the norm's gain) is not double decay
    assert doctor(model, opt, total_steps=50_000, loss=loss + model.norm.weight.pow(2).sum()) == []
    with pytest.raises(ValueError, match="loss must come from a forward pass with autograd on"):
        doctor(model, opt, loss=loss.detach())
    with pytest.raises(TypeError, match="loss must be a torch.Tensor"):
        doctor(model, opt, loss=1.5)


def _tiny(kind):
    import transformers as tf

    if kind == "gpt2":
        return tf.GPT2LMHeadModel(tf.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=32,
                                                bos_token_id=0, eos_token_id=0))
    if kind == "llama":
        return tf.LlamaForCausalLM(tf.LlamaConfig(num_hidden_layers=2, hidden_size=32, intermediate_size=64,
                                                  num_attention_heads=2, num_key_value_heads=2, vocab_size=100,
                                                  max_position_embeddings=32))
    return tf.BertForMaskedLM(tf.BertConfig(num_hidden_layers=2, hidden_size=32, intermediate_size=64,
                                            num_attention_heads=2, vocab_size=100, max_position_embeddings=32))


@pytest.mark.parametrize("kind", ["gpt2", "llama", "bert"])
def test_standard_transformers_recipes(kind, tmp_path):
    """transformers' Trainer, its AdamW and cosine-with-warmup schedule: the standard fine-tune (lr 5e-5,
    wd 0.01, 3,000 steps) and a from-scratch recipe (lr 1e-3, wd 0.1, 1,000 steps) get no warning and no
    advice to raise weight_decay; λ = 1e-8 gets one verdict; the real loss shows no double decay."""
    import transformers as tf

    for lr, wd, steps in ((5e-5, 0.01, 3000), (1e-3, 0.1, 1000), (1e-3, 1e-8, 1000)):
        model = _tiny(kind)
        args = tf.TrainingArguments(output_dir=str(tmp_path), learning_rate=lr, weight_decay=wd, max_steps=steps,
                                    lr_scheduler_type="cosine", warmup_steps=100, report_to=[], use_cpu=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer = tf.Trainer(model=model, args=args)
        trainer.create_optimizer_and_scheduler(num_training_steps=steps)
        ids = torch.randint(0, 100, (2, 16))
        loss = model(input_ids=ids, labels=ids).loss
        found = doctor(model, trainer.optimizer, scheduler=trainer.lr_scheduler, loss=loss)
        assert "raise" not in str(found).lower()
        if wd == 1e-8:
            assert [f.code for f in found if f.severity == "warning"] == ["decay-inert"], str(found)
        else:
            assert [f for f in found if f.severity != "info"] == [], str(found)
            assert "decay-weak" in found.codes and f"{steps}-step run" in str(found)   # the run read from the schedule


class Gpt(nn.Module):
    """Embedding + LayerNorm'd Linear layers, initialized like GPT-2 (std 0.02) or grokking's (std 1)."""

    def __init__(self, std):
        super().__init__()
        self.emb = nn.Embedding(64, 32)
        self.lin = nn.Linear(32, 32)
        self.norm = nn.LayerNorm(32)
        self.head = nn.Linear(32, 64)
        for w in (self.emb.weight, self.lin.weight, self.head.weight):
            nn.init.normal_(w, std=std)


@pytest.mark.parametrize("recipe", [
    # (name, optimizer, total_steps, steps_per_epoch, init std)
    ("resnet-cifar SGD", lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=5e-4), 64_000, 391, 0.05),
    ("nanoGPT AdamW", lambda ps: torch.optim.AdamW(ps, lr=6e-4, betas=(0.9, 0.95), weight_decay=0.1), 600_000, None,
     0.02),
    ("llama AdamW", lambda ps: torch.optim.AdamW(ps, lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1), 250_000, None,
     0.02),
    ("bert pre-training AdamW", lambda ps: torch.optim.AdamW(ps, lr=1e-4, weight_decay=0.01), 1_000_000, None, 0.02),
    ("grokking AdamW λ=1", lambda ps: torch.optim.AdamW(ps, lr=1e-3, betas=(0.9, 0.98), weight_decay=1.0), 100_000,
     None, 1.0),
    ("fine-tune AdamW", lambda ps: torch.optim.AdamW(ps, lr=2e-5, weight_decay=0.01), 3_000, 300, 0.02),
], ids=lambda r: r[0])
def test_published_recipes_get_no_strength_warning(recipe):
    _, make, total, per_epoch, std = recipe
    model = Gpt(std)
    groups = param_groups(model, 1.0)
    del groups[0]["weight_decay"]            # the decayed group takes the recipe's weight_decay; the other keeps 0
    found = doctor(model, make(groups), total_steps=total, steps_per_epoch=per_epoch)
    assert [f for f in found if f.severity != "info"] == [], str(found)
    assert "raise" not in str(found).lower()
