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


def _codes_for(model, optimizer, total_steps):
    return decaylab.doctor(model, optimizer, total_steps=total_steps).codes


def test_lightning_callback_logs_per_tensor_scalars_and_runs_the_doctor(tmp_path):
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import CSVLogger

    from decaylab.integrations.lightning import DecayMonitorCallback

    class Module(_lightning_module()):
        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-2, weight_decay=0.1)

    torch.manual_seed(0)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(64, 8), torch.randn(64, 1)),
                                       batch_size=8)
    module, callback = Module(), DecayMonitorCallback(every=1)
    trainer = pl.Trainer(max_steps=5, logger=CSVLogger(tmp_path, name="run"), log_every_n_steps=2, accelerator="cpu",
                         enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
                         callbacks=[callback])
    with pytest.warns(DecayDoctorWarning, match="decay-on-no-decay"):
        trainer.fit(module, data)

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


def _tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=64, n_positions=16, bos_token_id=0,
                        eos_token_id=0)
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
