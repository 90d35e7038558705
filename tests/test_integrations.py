"""DecayMonitorCallback inside the real Lightning Trainer and transformers Trainer: tiny models, CPU,
five steps each; the diagnostics are read back from what the framework logged."""

import csv

import pytest
import torch
from torch import nn

import decaylab
from decaylab.integrations import DecayDoctorWarning


def _net():
    """A LayerNorm network: AdamW over all of model.parameters() decays its LayerNorm and biases."""
    return nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.ReLU(), nn.Linear(16, 1))


def _lightning_module():
    """A LightningModule class training _net() with MSE; subclasses add configure_optimizers."""
    import lightning.pytorch as pl

    class NetModule(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = _net()

        def training_step(self, batch, batch_idx):
            x, y = batch
            return nn.functional.mse_loss(self.net(x), y)

    return NetModule


def _fit_five_steps_warning_decay_on_no_decay(module, tmp_path, log_every_n_steps):
    """Five Lightning steps of ``module`` on random rows with ``DecayMonitorCallback(every=1)`` and a CSV logger
    (``tmp_path/run/version_0``), asserting the doctor warns decay-on-no-decay; (callback, trainer, warnings)."""
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import CSVLogger

    from decaylab.integrations.lightning import DecayMonitorCallback

    torch.manual_seed(0)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(64, 8), torch.randn(64, 1)),
                                       batch_size=8)
    callback = DecayMonitorCallback(every=1)
    trainer = pl.Trainer(max_steps=5, logger=CSVLogger(tmp_path, name="run"), log_every_n_steps=log_every_n_steps,
                         accelerator="cpu", enable_progress_bar=False, enable_checkpointing=False,
                         enable_model_summary=False, callbacks=[callback])
    with pytest.warns(DecayDoctorWarning, match="decay-on-no-decay") as caught:
        trainer.fit(module, data)
    return callback, trainer, caught


def _codes_for(model, optimizer, total_steps):
    return decaylab.doctor(model, optimizer, total_steps=total_steps).codes


def test_lightning_callback_logs_per_tensor_scalars_and_runs_the_doctor(tmp_path):


    class Module(_lightning_module()):
        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-2, weight_decay=0.1)

    module = Module()
    callback, trainer, _ = _fit_five_steps_warning_decay_on_no_decay(module, tmp_path, log_every_n_steps=2)

    optimizer = trainer.optimizers[0]
    assert callback.monitor.optimizer is optimizer
    assert "decay-on-no-decay" in callback.findings.codes
    # the doctor was told the run length (5 steps), which changes its verdict on this setup
    assert callback.findings.codes == _codes_for(module, optimizer, 5) != _codes_for(module, optimizer, None)

    with open(tmp_path / "run" / "version_0" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("decay_angle/net.0.weight")]
    assert [int(r["step"]) for r in rows] == [2, 4]  # Lightning's cadence: every log_every_n_steps steps
    steps, angles = callback.monitor.series("net.0.weight", "angle")
    assert steps == [1, 2, 3, 4, 5]
    assert float(rows[1]["decay_angle/net.0.weight"]) == pytest.approx(angles[3], rel=1e-6)
    assert float(rows[1]["decay_weight_norm/net.3.bias"]) == pytest.approx(
        callback.monitor.series("net.3.bias", "weight_norm")[1][3], rel=1e-6)       # the norm after step 4
    assert "decay_angle/net.3.bias" not in rows[1]  # one-element tensor: no angle
    module.net[0].weight.grad = torch.ones_like(module.net[0].weight)
    optimizer.step()  # after training the monitor is detached
    assert callback.monitor.steps_seen == 5


def test_lightning_callback_watches_every_optimizer_of_a_gan(tmp_path):
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import CSVLogger

    from decaylab.groups import param_groups
    from decaylab.integrations.lightning import DecayMonitorCallback

    class GAN(pl.LightningModule):
        """Generator and discriminator, each with its own optimizer (manual optimization)."""

        def __init__(self):
            super().__init__()
            self.automatic_optimization = False
            self.generator = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8))
            self.discriminator = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1))

        def training_step(self, batch, batch_idx):
            (real,) = batch
            gen_opt, dis_opt = self.optimizers()
            fake = self.generator(torch.randn(len(real), 4))
            ones, zeros = torch.ones(len(real), 1), torch.zeros(len(real), 1)
            bce = nn.functional.binary_cross_entropy_with_logits
            dis_loss = bce(self.discriminator(real), ones) + bce(self.discriminator(fake.detach()), zeros)
            dis_opt.zero_grad()
            self.manual_backward(dis_loss)
            dis_opt.step()
            gen_loss = bce(self.discriminator(fake), ones)
            gen_opt.zero_grad()
            self.manual_backward(gen_loss)
            gen_opt.step()

        def configure_optimizers(self):
            return (torch.optim.AdamW(param_groups(self.generator, 0.01), lr=1e-3),
                    torch.optim.AdamW(param_groups(self.discriminator, 0.01), lr=1e-3))

    torch.manual_seed(0)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(64, 8)), batch_size=8)
    module, callback = GAN(), DecayMonitorCallback(every=1)
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=4, logger=CSVLogger(tmp_path, name="gan"),
                         log_every_n_steps=1, accelerator="cpu", enable_progress_bar=False,
                         enable_checkpointing=False, enable_model_summary=False, callbacks=[callback])
    trainer.fit(module, data)
    # each optimizer holds half the model: together nothing is missing
    assert "missing-params" not in callback.findings.codes
    assert "missing-params" in decaylab.doctor(module, trainer.optimizers[0]).codes   # one alone would say so
    assert [m.optimizer for m in callback.monitors] == [o.optimizer if hasattr(o, "optimizer") else o
                                                        for o in trainer.optimizers]
    assert all(m.steps_seen == 4 for m in callback.monitors)
    with open(tmp_path / "gan" / "version_0" / "metrics.csv") as f:
        header = next(csv.reader(f))
    assert "decay_weight_norm/generator.0.weight" in header and "decay_weight_norm/discriminator.0.weight" in header


def _tiny_gpt2(**config):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(**{"n_layer": 1, "n_embd": 16, "n_head": 2, "vocab_size": 64, "n_positions": 16,
                           "bos_token_id": 0, "eos_token_id": 0, **config})
    return GPT2LMHeadModel(config)


def test_transformers_callback_adds_scalars_to_the_logs_and_runs_the_doctor(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter
    from transformers import Trainer, TrainingArguments
    from transformers.integrations import TensorBoardCallback

    from decaylab.integrations.transformers import DecayMonitorCallback

    model = _tiny_gpt2()
    g = torch.Generator().manual_seed(0)
    data = [{"input_ids": ids, "labels": ids} for ids in torch.randint(0, 64, (40, 16), generator=g)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)  # decays LayerNorm too

    # a TensorBoard reporter placed after the decay callback receives its scalars
    reporter = TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(tmp_path / "tb")))
    callback = DecayMonitorCallback(every=1)
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=5, logging_steps=2, report_to=[], use_cpu=True,
                             per_device_train_batch_size=4, save_strategy="no", disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=data, optimizers=(optimizer, None),
                      callbacks=[callback, reporter])
    with pytest.warns(DecayDoctorWarning, match="decay-on-no-decay"):
        trainer.train()

    assert callback.monitor.optimizer is optimizer  # unwrapped from accelerate's AcceleratedOptimizer
    assert "decay-on-no-decay" in callback.findings.codes
    assert "transformer.ln_f.weight" in next(f for f in callback.findings if f.code == "decay-on-no-decay").params
    assert callback.findings.codes == _codes_for(model, optimizer, 5) != _codes_for(model, optimizer, None)

    tag = "decay_angle/transformer.h.0.attn.c_attn.weight"
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert [entry["step"] for entry in logged] == [2, 4]
    assert all(tag in entry for entry in logged)
    steps, angles = callback.monitor.series("transformer.h.0.attn.c_attn.weight", "angle")
    assert steps == [1, 2, 3, 4, 5]
    assert logged[1][tag] == pytest.approx(angles[3]) and angles[3] > 0
    norms = callback.monitor.series("transformer.ln_f.bias", "weight_norm")[1]
    assert logged[1]["decay_weight_norm/transformer.ln_f.bias"] == pytest.approx(norms[3], rel=1e-6) != norms[4]
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    written = events.Scalars(f"train/{tag}")
    # steps 2 and 4, and the Trainer's closing log (train_runtime, ...) at step 5 with the newest record
    assert [e.step for e in written] == [2, 4, 5]
    assert [e.value for e in written] == pytest.approx([angles[1], angles[3], angles[4]], rel=1e-6)


def test_lightning_callback_gives_the_doctor_the_lr_scheduler(tmp_path):
    """OneCycleLR starts at max_lr/25: only with the scheduler does the doctor judge λ=1 at the peak 0.1
    (10% of every weight per step) and call it too strong."""
    import lightning.pytorch as pl

    from decaylab.integrations.lightning import DecayMonitorCallback

    class Module(_lightning_module()):
        def configure_optimizers(self):
            opt = torch.optim.AdamW(decaylab.param_groups(self, 1.0), lr=0.1)
            cycle = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=5)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": cycle, "interval": "step"}}

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(40, 8), torch.randn(40, 1)),
                                       batch_size=8)
    module, callback = Module(), DecayMonitorCallback()
    trainer = pl.Trainer(max_steps=5, logger=False, accelerator="cpu", enable_progress_bar=False,
                         enable_checkpointing=False, enable_model_summary=False, callbacks=[callback])
    with pytest.warns(DecayDoctorWarning, match="decay-dominates"):
        trainer.fit(module, data)
    assert callback.findings.codes == ["decay-dominates"] and "τ_iter = 10 steps" in callback.findings[0].why


def test_callback_arguments_are_checked():
    from decaylab.integrations.lightning import DecayMonitorCallback

    with pytest.raises(ValueError, match="metrics must be one of"):
        DecayMonitorCallback(metrics=("angel",))
    with pytest.raises(ValueError, match="every must be an integer in"):
        DecayMonitorCallback(every=0)
    with pytest.raises(TypeError, match="doctor must be a bool"):
        DecayMonitorCallback(doctor="yes")


def test_unwrap_scheduler_finds_the_torch_scheduler_of_the_optimizer():
    from types import SimpleNamespace

    from decaylab.integrations._callback import unwrap_scheduler

    opt = torch.optim.AdamW([nn.Parameter(torch.zeros(2))], lr=1e-3)
    inner = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    wrapped_opt = SimpleNamespace(optimizer=opt)                  # like accelerate's AcceleratedOptimizer
    wrapper = SimpleNamespace(scheduler=inner, optimizer=wrapped_opt)
    assert unwrap_scheduler(wrapper, opt) is inner and unwrap_scheduler(inner, opt) is inner
    other = torch.optim.AdamW([nn.Parameter(torch.zeros(2))], lr=1e-3)
    assert unwrap_scheduler(inner, other) is None and unwrap_scheduler(None, opt) is None


# --- MuonAdamW as the one optimizer of a Trainer, and groups added during training ------------------------------

MUON, ADAMW = dict(lr=0.02, weight_decay=0.1), dict(lr=3e-3, weight_decay=0.1)


def _muon_adamw(model):
    from decaylab.optim import MuonAdamW, muon_param_groups

    return MuonAdamW(muon_param_groups(model), muon=MUON, adamw=ADAMW)


def _halves(optimizer, model):
    """{param name: the MuonAdamW group (its index) that holds it}, and the names of each half."""
    names = {id(p): n for n, p in model.named_parameters()}
    group_of = {names[id(p)]: gi for gi, g in enumerate(optimizer.param_groups) for p in g["params"]}
    muon = {n for n, gi in group_of.items() if optimizer.param_groups[gi]["use_muon"]}
    return group_of, muon, set(group_of) - muon


def _assert_reads_both_halves(callback, optimizer, model, step):
    """Every trainable tensor of both halves is monitored, and its record at ``step`` carries its own group's lr
    and λ; the doctor reads both halves as decoupled decay, each with its own lr (τ_iter = 1/(lr·λ) at the peak
    lr), and gives no "use AdamW" advice."""
    group_of, muon, adamw = _halves(optimizer, model)
    assert muon and adamw and set(callback.monitor.params) == set(group_of)
    records = {r["param"]: r for r in callback.monitor.history if r["step"] == step}
    assert all(records[n]["weight_decay"] == optimizer.param_groups[gi]["weight_decay"] for n, gi in group_of.items())
    # one schedule scales both halves, each from its own base lr (Muon 0.02, AdamW 3e-3)
    factors = [records[n]["lr"] / optimizer.param_groups[gi]["initial_lr"] for n, gi in group_of.items()]
    assert min(factors) > 0 and max(factors) == pytest.approx(min(factors), rel=1e-12)
    assert {optimizer.param_groups[gi]["initial_lr"] for gi in group_of.values()} == {MUON["lr"], ADAMW["lr"]}
    findings = callback.findings
    assert not [f for f in findings if f.code.startswith("coupled")]
    assert not [f for f in findings if "AdamW was probably meant" in f.why or "use torch.optim.AdamW" in f.fix]
    by_half = {half: [f for f in findings if set(f.params) & names] for half, names in (("muon", muon),
                                                                                         ("adamw", adamw))}
    assert any("τ_iter = 500 steps" in f.why for f in by_half["muon"])        # 1/(0.02·0.1)
    assert any("τ_iter = 3.33e+03 steps" in f.why for f in by_half["adamw"])  # 1/(3e-3·0.1), the decayed head


@pytest.mark.slow  # two Trainer runs
def test_transformers_trainer_trains_muon_adamw_and_resumes_it_bit_for_bit(tmp_path):
    """MuonAdamW as the Trainer's one optimizer (``optimizers=(opt, None)``: the Trainer's warm-up + linear schedule
    drives both halves). A run of 8 steps (5 per epoch, dropout on) saving at step 3, and a run resumed from that
    checkpoint, end with the same weights and optimizer state bit for bit: the Trainer fast-forwards the seeded
    sampler past the 3 trained batches and restores the RNG states it saved."""
    from transformers import Trainer, TrainingArguments

    from decaylab.integrations.transformers import DecayMonitorCallback

    g = torch.Generator().manual_seed(0)
    data = [{"input_ids": ids, "labels": ids} for ids in torch.randint(0, 64, (40, 16), generator=g)]

    def run(resume=None):
        model = _tiny_gpt2(n_layer=2, n_embd=32, n_positions=32, tie_word_embeddings=False)
        if resume:  # other weights: the checkpoint's are loaded into the tensors the optimizer holds
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(1.0)
        optimizer, callback = _muon_adamw(model), DecayMonitorCallback(every=1)
        args = TrainingArguments(output_dir=str(tmp_path), max_steps=8, save_steps=3, logging_steps=4, seed=1,
                                 warmup_steps=2, report_to=[], use_cpu=True, per_device_train_batch_size=8,
                                 disable_tqdm=True)
        trainer = Trainer(model=model, args=args, train_dataset=data, optimizers=(optimizer, None),
                          callbacks=[callback])
        trainer.train(resume_from_checkpoint=resume)
        return model, optimizer, callback, trainer

    model, optimizer, callback, trainer = run()
    assert model.transformer.h[0].attn.resid_dropout.p > 0 and trainer.state.epoch > 1
    _assert_reads_both_halves(callback, optimizer, model, step=4)
    logged = next(entry for entry in trainer.state.log_history if entry.get("step") == 4 and "loss" in entry)
    assert "decay_angle/transformer.h.0.mlp.c_fc.weight" in logged and "decay_angle/lm_head.weight" in logged

    resumed, resumed_optimizer, resumed_callback, _ = run(resume=str(tmp_path / "checkpoint-3"))
    assert resumed_callback.monitor.steps_seen == 5      # steps 4…8, monitored again after resuming
    state, resumed_state = model.state_dict(), resumed.state_dict()
    assert all(torch.equal(state[k], resumed_state[k]) for k in state)
    saved, loaded = optimizer.state_dict()["state"], resumed_optimizer.state_dict()["state"]
    assert saved.keys() == loaded.keys() and {"momentum_buffer", "exp_avg"} <= {k for s in saved.values() for k in s}
    assert all(torch.equal(saved[i][k], loaded[i][k]) for i in saved for k in saved[i])
    initial = _tiny_gpt2(n_layer=2, n_embd=32, n_positions=32, tie_word_embeddings=False).state_dict()
    assert not torch.equal(initial["transformer.h.0.mlp.c_fc.weight"], state["transformer.h.0.mlp.c_fc.weight"])


def test_lightning_trains_muon_adamw_with_a_scheduler_and_resumes_it(tmp_path):
    """configure_optimizers returns MuonAdamW with a per-step cosine schedule; the callback reads both halves; a
    run resumed from the end of epoch 1 ends with the weights and optimizer state of the uninterrupted run."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint

    from decaylab.integrations.lightning import DecayMonitorCallback

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)  # Muon for the two hidden matrices, AdamW for the head, biases and the norm
            self.net = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                                     nn.Linear(16, 1))

        def training_step(self, batch, batch_idx):
            x, y = batch
            return nn.functional.mse_loss(self.net(x), y)

        def configure_optimizers(self):
            opt = _muon_adamw(self)
            cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=8)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": cosine, "interval": "step"}}

    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(32, 8, generator=g),
                                                                      torch.randn(32, 1, generator=g)), batch_size=8)

    def run(ckpt_path=None):
        module, callback = Module(), DecayMonitorCallback(every=1)
        saver = ModelCheckpoint(dirpath=tmp_path, filename="{epoch}", every_n_epochs=1, save_top_k=-1)
        trainer = pl.Trainer(max_epochs=2, logger=False, accelerator="cpu", enable_progress_bar=False,
                             enable_model_summary=False, default_root_dir=tmp_path, callbacks=[callback, saver])
        trainer.fit(module, data, ckpt_path=ckpt_path)
        return module, callback, trainer

    module, callback, trainer = run()
    optimizer = trainer.optimizers[0]
    assert callback.monitor.optimizer is optimizer and callback.monitor.steps_seen == 8
    _assert_reads_both_halves(callback, optimizer, module, step=3)

    resumed, resumed_callback, resumed_trainer = run(ckpt_path=tmp_path / "epoch=0.ckpt")
    assert resumed_callback.monitor.steps_seen == 4
    assert all(torch.equal(p, q) for p, q in zip(module.parameters(), resumed.parameters()))
    saved, loaded = optimizer.state_dict()["state"], resumed_trainer.optimizers[0].state_dict()["state"]
    assert {"momentum_buffer", "exp_avg"} <= {k for s in saved.values() for k in s}
    assert all(torch.equal(saved[i][k], loaded[i][k]) for i in saved for k in saved[i])
    assert [g["lr"] for g in resumed_trainer.optimizers[0].param_groups] == [g["lr"] for g in optimizer.param_groups]


def test_lightning_callback_monitors_a_group_added_during_training(tmp_path):
    """The head is unfrozen after step 2 and added with add_param_group (AdamW's default λ, biases included): it is
    monitored from step 3 with its own group's settings, logged, and the doctor, run again, warns about the bias."""


    class Module(_lightning_module()):
        def __init__(self):
            super().__init__()
            self.net[3].requires_grad_(False)

        def configure_optimizers(self):
            return torch.optim.AdamW(decaylab.param_groups(self, 0.1), lr=1e-2)

        def on_train_batch_start(self, batch, batch_idx):
            if self.global_step == 2:
                self.net[3].requires_grad_(True)
                self.optimizers().optimizer.add_param_group({"params": list(self.net[3].parameters()), "lr": 1e-3})

    callback, _, caught = _fit_five_steps_warning_decay_on_no_decay(Module(), tmp_path, log_every_n_steps=1)
    assert callback.monitor.series("net.3.weight", "lr") == ([3, 4, 5], [1e-3] * 3)
    assert callback.monitor.series("net.3.bias", "weight_decay") == ([3, 4, 5], [0.01] * 3)  # AdamW's default λ
    assert callback.monitor.series("net.0.weight", "lr")[0] == [1, 2, 3, 4, 5]
    assert [f.params for f in callback.findings if f.code == "decay-on-no-decay"] == [("net.3.bias",)]
    assert sum("decay-on-no-decay" in str(w.message) for w in caught) == 1
    with open(tmp_path / "run" / "version_0" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("decay_weight_norm/net.0.weight")]
    assert [bool(r.get("decay_weight_norm/net.3.weight")) for r in rows] == [False, False, True, True, True]


def test_transformers_callback_monitors_a_group_added_during_training(tmp_path):
    """A callback unfreezes the final LayerNorm after step 2 and adds it to MuonAdamW as an AdamW group (whose
    default λ decays it): it is monitored from step 3, in the logs, and the doctor run again warns about it."""
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from decaylab.integrations.transformers import DecayMonitorCallback

    class Unfreeze(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, optimizer=None, lr_scheduler=None, **kwargs):
            if state.global_step == 2:
                model.transformer.ln_f.requires_grad_(True)
                optimizer.add_param_group({"params": list(model.transformer.ln_f.parameters()), "use_muon": False})
                # torch's LR schedulers refuse a group they were not built with (scheduler.step() raises
                # ValueError): the Trainer's LambdaLR needs the new group's base lr and factor
                lr_scheduler.base_lrs.append(ADAMW["lr"])
                lr_scheduler.lr_lambdas.append(lr_scheduler.lr_lambdas[0])

    model = _tiny_gpt2()
    model.transformer.ln_f.requires_grad_(False)
    g = torch.Generator().manual_seed(0)
    data = [{"input_ids": ids, "labels": ids} for ids in torch.randint(0, 64, (40, 16), generator=g)]
    callback = DecayMonitorCallback(every=1)
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=5, logging_steps=2, report_to=[], use_cpu=True,
                             per_device_train_batch_size=4, save_strategy="no", disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=data, optimizers=(_muon_adamw(model), None),
                      callbacks=[Unfreeze(), callback])
    with pytest.warns(DecayDoctorWarning, match="decay-on-no-decay"):
        trainer.train()
    assert callback.monitor.series("transformer.ln_f.weight", "weight_decay") == ([3, 4, 5], [0.1] * 3)
    assert [f.params for f in callback.findings if f.code == "decay-on-no-decay"] == [
        ("transformer.ln_f.weight", "transformer.ln_f.bias")]
    logged = {entry["step"]: entry for entry in trainer.state.log_history if "loss" in entry}
    assert "decay_weight_norm/transformer.ln_f.weight" not in logged[2]
    assert logged[4]["decay_weight_norm/transformer.ln_f.weight"] == pytest.approx(
        callback.monitor.series("transformer.ln_f.weight", "weight_norm")[1][1], rel=1e-6)
