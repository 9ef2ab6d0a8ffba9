"""AudioVAEModule under a real Lightning Trainer on tiny synthetic batches (CPU)."""
from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from callbacks.audio_logging import AudioLoggingCallback
from callbacks.grad_norm import GradNormCallback
from lightning_modules.audiovae import AudioVAEModule, vae_schedule
from models import load_audiovae
from voxlab.config import compose



@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: these ops are small, and two OpenMP threads on a busy 2-core machine
    were measured 5-20x slower than one."""
    torch.set_num_threads(1)
    yield
T = 3200  # 0.2 s: 5 latent frames

SMALL = ["model.decoder=waveform", "module.lambdas.adv/gen_loss=1.0", "module.lambdas.adv/feat_loss=2.0", "model.encoder_dim=4",  # the waveform decoder with its GAN
          "model.decoder_dim=32", "discriminator.periods=[2,3]",
         "discriminator.period_channels=[4,8]", "discriminator.stft_resolutions=[[256,64]]",
         "discriminator.stft_channels=4", "module.mel_loss.window_lengths=[64,256]",
         "module.mel_loss.n_mels=[10,40]", "module.stft_resolutions=[[512,128]]",
         "module.val_mel.n_fft=512", "module.val_mel.hop_length=128", "module.val_mel.n_mels=40",
         "optim.generator.lr=3e-3", "optim.discriminator.lr=3e-3"]


def config(*overrides: str):
    return compose("audiovae", "tiny", [*SMALL, *overrides])


def batch(n: int = 2, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(T) / 16000
    audio = torch.stack([0.3 * torch.sin(2 * torch.pi * (150 + 90 * i) * t) * torch.sin(2 * torch.pi * 4 * t)
                         + 0.02 * torch.randn(T, generator=g) for i in range(n)])[:, None]
    lens = torch.tensor([T] + [T - 400] * (n - 1))
    audio[1:, :, T - 400:] = 0
    return {"audio": audio, "audio_lens": lens, "text": ["x"] * n, "utt": [f"u{i}" for i in range(n)],
            "speaker": ["s"] * n, "lang": ["en"] * n}


def loader(num_batches: int = 8) -> DataLoader:
    fixed = batch()
    return DataLoader([fixed] * num_batches, batch_size=None)


def trainer(tmp_path, max_steps: int, **kw) -> L.Trainer:
    kw.setdefault("limit_val_batches", 0)
    return L.Trainer(max_steps=max_steps, max_epochs=-1, default_root_dir=tmp_path, logger=False,
                     enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                     num_sanity_val_steps=0, **kw)


def mel_loss_of(module: AudioVAEModule, b: dict) -> float:
    module.eval()
    with torch.no_grad():
        return float(module.mel_loss(module.reconstruct(b["audio"]), b["audio"]))


def test_generator_terms_are_named_and_finite():
    module = AudioVAEModule(config("module.lambdas.waveform/loss=1.0", "module.lambdas.stft/loss=0.5"))
    b = batch()
    out = module.vae(b["audio"])
    recon = out["audio"][..., :T]
    terms = module._generator_terms(b["audio"], out, recon, adversarial=True)
    assert set(terms) == {"mel/loss", "kl/loss", "waveform/loss", "stft/loss", "adv/gen_loss", "adv/feat_loss"}
    assert all(torch.isfinite(v) and v.dim() == 0 for v in terms.values())
    warm = module._generator_terms(b["audio"], out, recon, adversarial=False)
    assert "adv/gen_loss" not in warm and "adv/feat_loss" not in warm


def test_a_few_steps_lower_the_mel_loss(tmp_path):
    torch.manual_seed(0)  # the model's init and the batch: not whatever earlier tests left
    b = batch()
    module = AudioVAEModule(config("module.warmup_steps=100"))  # mel-only for this short run
    before = mel_loss_of(module, b)
    module.train()
    trainer(tmp_path, max_steps=12).fit(module, loader(12))
    after = mel_loss_of(module, b)
    assert module.generator_step == 12
    assert after < 0.9 * before, (before, after)


def test_max_steps_counts_generator_steps_with_accumulation(tmp_path):
    module = AudioVAEModule(config("module.warmup_steps=1", "module.accumulate_grad_batches=2"))
    grad_norms = GradNormCallback()
    tr = trainer(tmp_path, max_steps=3, callbacks=[grad_norms])
    tr.fit(module, loader(20))
    assert module.generator_step == 3
    assert module._micro == 6  # 2 batches per step
    assert tr.global_step == 3 + 2  # Lightning also counts the discriminator's steps (from step 1)
    assert set(grad_norms.last) == {"generator", "discriminator"}
    opt_g, opt_d = tr.optimizers
    step_of = lambda opt: int(next(iter(opt.state.values()))["step"])  # noqa: E731
    assert step_of(opt_g) == 3 and step_of(opt_d) == 2


def test_save_and_resume_keep_generator_counter_and_optimizer_state(tmp_path):
    cfg = config("module.warmup_steps=2", "module.ema.enabled=true", "module.ema.decay=0.9")
    module = AudioVAEModule(cfg)
    tr = trainer(tmp_path, max_steps=4)
    tr.fit(module, loader(20))
    ckpt_path = tmp_path / "a.ckpt"
    tr.save_checkpoint(ckpt_path)
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)  # weights-only readable
    assert ckpt["generator_step"] == 4
    assert ckpt["voxlab_config"]["model"]["decoder_dim"] == 32 and "hyper_parameters" not in ckpt  # stored once
    assert len(ckpt["optimizer_states"]) == 2 and ckpt["optimizer_states"][0]["state"]
    # The exported model of a checkpoint is the EMA generator.
    vae = load_audiovae(ckpt_path)
    for a, b in zip(vae.state_dict().values(), module.vae_ema.state_dict().values()):
        assert torch.equal(a, b)
    assert not all(torch.equal(a, b) for a, b in zip(module.vae.parameters(), module.vae_ema.parameters()))

    resumed = AudioVAEModule(cfg)
    tr2 = trainer(tmp_path, max_steps=6)
    tr2.fit(resumed, loader(20), ckpt_path=str(ckpt_path))
    assert resumed.generator_step == 6
    opt_g, opt_d = tr2.optimizers
    # Adam's step counts continue from the checkpoint: 4 + 2 generator, 2 + 2 discriminator steps.
    assert int(next(iter(opt_g.state.values()))["step"]) == 6
    assert int(next(iter(opt_d.state.values()))["step"]) == 4
    assert tr2.lr_scheduler_configs[0].scheduler.last_epoch == 6


def _norm(optimizer) -> float:
    grads = [p.grad.float().norm() for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(grads)))


class _ClipProbe(AudioVAEModule):
    """Records each optimizer's gradient norm before and after the module's own clipping."""

    def on_before_optimizer_step(self, optimizer) -> None:
        name = self.optimizer_name(optimizer)
        self.norms = getattr(self, "norms", {"before": [], "after": []})
        self.norms["before"].append((name, _norm(optimizer)))
        super().on_before_optimizer_step(optimizer)
        self.norms["after"].append((name, _norm(optimizer)))


def test_gradient_clipping_acts_on_unscaled_gradients(tmp_path):
    from lightning.pytorch.plugins.precision import MixedPrecision
    clip = ["module.clip_grad_norm.generator=0.01", "module.clip_grad_norm.discriminator=0.01"]
    first_generator_norm = {}
    for precision in ("32-true", "bf16-mixed", "16-mixed"):
        torch.manual_seed(0)
        module = _ClipProbe(config("module.warmup_steps=1", *clip))
        grad_norms = GradNormCallback()
        kw = {"precision": precision}
        if precision == "16-mixed":  # Lightning turns 16-mixed into bf16 on CPU: build the fp16 scaler by hand
            kw = {"plugins": [MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=2.0**8))]}
        trainer(tmp_path, max_steps=3, callbacks=[grad_norms], **kw).fit(module, loader(4))
        assert module.generator_step == 3
        finite = lambda xs: [v for _, v in xs if math.isfinite(v)]  # noqa: E731
        # the scaler may skip an overflowing fp16 step (non-finite gradients); the others are clipped
        assert len(finite(module.norms["after"])) >= 3
        # exactly at the limit: clipping a still-scaled gradient would leave it 256 times smaller
        assert all(0.0099 <= v <= 0.0101 for v in finite(module.norms["after"])), (precision, module.norms)
        first_generator_norm[precision] = next(v for n, v in module.norms["before"]
                                               if n == "generator" and math.isfinite(v))
        # the callback logs the same (unscaled, unclipped) norm the module clips
        assert grad_norms.last["discriminator"] == pytest.approx(
            [v for n, v in module.norms["before"] if n == "discriminator"][-1], rel=1e-5)
    # The same first step has the same gradient norm in fp32 and under mixed precision: with fp16
    # loss scaling (x256) left in, it would be 256 times larger.
    ref = first_generator_norm["32-true"]
    for precision in ("bf16-mixed", "16-mixed"):
        assert 0.5 < first_generator_norm[precision] / ref < 2.0, first_generator_norm


def test_validation_metrics_and_audio_logging(tmp_path):
    module = AudioVAEModule(config())
    full = batch()
    singles = [{k: v[i : i + 1] for k, v in full.items()} for i in range(2)]  # items come from two batches
    val = DataLoader(singles, batch_size=None)
    logger = AudioLoggingCallback(num_items=2, sample_rate=16000)
    tr = trainer(tmp_path, max_steps=2, val_check_interval=1, limit_val_batches=2, callbacks=[logger])
    tr.fit(module, train_dataloaders=loader(4), val_dataloaders=val)
    metrics = tr.callback_metrics
    assert torch.isfinite(metrics["val/mel_l1"]) and torch.isfinite(metrics["val/stft_distance"])
    audio_dir = tmp_path / "audio"
    assert sorted(p.name for p in (audio_dir / "ground_truth").iterdir()) == [
        "item0.png", "item0.wav", "item1.png", "item1.wav"]
    steps = sorted(p.name for p in audio_dir.iterdir() if p.name.startswith("step_"))
    assert steps == ["step_000001", "step_000002"]
    import soundfile as sf
    wav, sr = sf.read(audio_dir / "ground_truth" / "item1.wav")
    assert sr == 16000 and len(wav) == T - 400  # the item's true length, not the padded one


def test_lr_schedule():
    f = vae_schedule("exponential", gamma=0.5, warmup_steps=2)
    assert [f(i) for i in range(4)] == [0.5 * 1, 1.0 * 0.5, 0.25, 0.125]
    assert vae_schedule("constant")(100) == 1.0
    with pytest.raises(ValueError, match="constant"):
        vae_schedule("cosine")


def test_nonfinite_generator_loss_is_skipped_or_stops(tmp_path):
    from lightning_modules.nonfinite import NonFiniteLoss

    module = AudioVAEModule(config("module.warmup_steps=100"))
    real = module._generator_terms
    calls = []

    def poisoned(*args, **kwargs):
        terms = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 3:  # the third batch only
            terms["mel/loss"] = terms["mel/loss"] * float("nan")
        return terms

    module._generator_terms = poisoned
    trainer(tmp_path, max_steps=4).fit(module, loader(8))
    assert module.nonfinite_skips == 1 and module.generator_step == 4
    assert all(bool(torch.isfinite(p).all()) for p in module.vae.parameters())
    module = AudioVAEModule(config("module.warmup_steps=100", "nonfinite.policy=stop"))
    real = module._generator_terms
    calls.clear()
    module._generator_terms = poisoned
    with pytest.raises(NonFiniteLoss, match=r"non-finite mel/loss, loss at step 2; batch utterances: u0, u1"):
        trainer(tmp_path, max_steps=4).fit(module, loader(8))


def test_validation_logs_pesq_and_stoi_of_the_reconstructions(tmp_path):
    """Wideband PESQ and STOI of reconstructions in the validation logs: the module's figures are the
    means of eval/metrics/codec.py's over the items, which rank a clean copy far above noise."""
    from eval.metrics.codec import codec_scores

    n = 8000  # 0.5 s: long enough for both metrics
    t = torch.arange(n) / 16000
    audio = torch.stack([0.3 * torch.sin(2 * torch.pi * f * t) * torch.sin(2 * torch.pi * 3 * t) for f in (150, 240)])
    clean = codec_scores(audio[0], audio[0], 16000)
    noisy = codec_scores(audio[0] + 0.1 * torch.randn(n, generator=torch.Generator().manual_seed(0)), audio[0], 16000)
    assert clean["pesq_wb"] > 4.5 and clean["stoi"] > 0.99 and noisy["pesq_wb"] < 2 and noisy["stoi"] < 0.6
    assert codec_scores(audio[0, :3200], audio[0, :3200], 16000) == {"pesq_wb": None, "stoi": None}  # 0.2 s

    module = AudioVAEModule(config())
    val = {"audio": audio[:, None], "audio_lens": torch.tensor([n, n - 1600]), "text": ["x"] * 2,
           "utt": ["u0", "u1"], "speaker": ["s"] * 2, "lang": ["en"] * 2}
    tr = trainer(tmp_path, max_steps=1, val_check_interval=1, limit_val_batches=1)
    tr.fit(module, train_dataloaders=loader(2), val_dataloaders=DataLoader([val], batch_size=None))
    with torch.no_grad():
        recon = module.reconstruct(val["audio"])
    expected = [codec_scores(recon[i, 0, :m], val["audio"][i, 0, :m], 16000) for i, m in enumerate([n, n - 1600])]
    for key, logged in (("pesq_wb", "val/pesq_wb"), ("stoi", "val/stoi")):
        values = [e[key] for e in expected if e[key] is not None]
        assert values and float(tr.callback_metrics[logged]) == pytest.approx(sum(values) / len(values), rel=1e-4)
