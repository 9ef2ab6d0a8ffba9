"""AudioVAE training: reconstruction (multi-scale mel, KL, optional waveform / STFT) plus a GAN
(multi-period + multi-resolution STFT discriminators, adversarial + feature-matching terms).

Manual optimisation, one generator and one discriminator AdamW. Step counting: Lightning's
`global_step` counts every optimizer step (generator + discriminator), so this module keeps its own
`generator_step` (saved in checkpoints) and makes `trainer.max_steps` mean generator steps: at fit
start it takes the Trainer's max_steps as its budget, lifts the Trainer's own limit, and stops the
Trainer once `generator_step` reaches the budget. Schedules, the mel-only warm-up and EMA count
generator steps too. With `module.accumulate_grad_batches = N`, one generator step takes N batches.

Config read: `model` (the AudioVAE), `discriminator`, `module.*` (lambdas, warmup_steps,
adversarial_loss, accumulate_grad_batches, clip_grad_norm, ema, mel_loss, stft_resolutions,
val_mel), `optim.*` (generator, discriminator, scheduler), `data.sample_rate`.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torchmetrics import MeanMetric

from eval.metrics.codec import codec_scores
from models.losses import (MultiResolutionSTFTLoss, MultiScaleMelLoss, discriminator_loss,
                           feature_matching_loss, generator_adversarial_loss, kl_loss)
from lightning_modules.base import VoxLabModule
from lightning_modules.schedules import lr_lambda
from voxlab.audio import MelSpectrogram
from models.weights import build_audiovae
from voxlab.config import instantiate

ADVERSARIAL_TERMS = ("adv/gen_loss", "adv/feat_loss")


def vae_schedule(name: str, gamma: float = 1.0, warmup_steps: int = 0):
    """`optim.scheduler`: linear warm-up, then constant or exponential decay (gamma per step)."""
    if name not in ("constant", "exponential"):
        raise ValueError(f"optim.scheduler.name {name!r}: expected 'constant' or 'exponential'")
    return lr_lambda(warmup_steps=warmup_steps, decay=name, gamma=gamma)


class AudioVAEModule(VoxLabModule):
    @staticmethod
    def build_network(config: DictConfig):
        """The AudioVAE of `config.model` (voxlab.cli.model_size builds it on the meta device to size it)."""
        return build_audiovae(OmegaConf.to_container(config.model, resolve=True), "config model")

    def __init__(self, config: DictConfig | dict):
        # The resolved config rides in every checkpoint (lightning_modules.base), so a checkpoint
        # alone rebuilds the model.
        config = config if isinstance(config, DictConfig) else OmegaConf.create(config)
        super().__init__(config, config.module.lambdas)
        self.cfg = self.config
        m = config.module
        self.vae = self.build_network(config)
        self.discriminator = instantiate(config.discriminator)
        self.vae_ema = copy.deepcopy(self.vae).requires_grad_(False) if m.ema.enabled else None
        sr = int(config.data.sample_rate)
        self.mel_loss = MultiScaleMelLoss(sr, **OmegaConf.to_container(m.mel_loss))
        self.stft_loss = MultiResolutionSTFTLoss(m.stft_resolutions)
        self.val_mel = MelSpectrogram(sr, **OmegaConf.to_container(m.val_mel), power=1.0, log=True)
        # wideband PESQ and STOI of the reconstructions: means over the items where they are defined
        # (eval/metrics/codec.py)
        self.val_pesq, self.val_stoi = MeanMetric(), MeanMetric()
        self.adversarial = any(self.lambdas.get(k, 0.0) for k in ADVERSARIAL_TERMS)
        self.automatic_optimization = False
        self.generator_step = 0  # optimizer steps of the generator; saved in checkpoints
        self._micro = 0  # batches seen, for gradient accumulation
        self._budget: int | None = None

    # ---- models -------------------------------------------------------------------------------
    @property
    def inference_vae(self):
        """The EMA generator when EMA is on (used for validation and export), else the trained one."""
        return self.vae_ema if self.vae_ema is not None else self.vae

    @torch.no_grad()
    def reconstruct(self, audio: torch.Tensor) -> torch.Tensor:
        """[B,1,T] -> [B,1,T] through the posterior mean."""
        return self.inference_vae(audio, sample=False)["audio"][..., : audio.shape[-1]]

    # ---- optimisation -------------------------------------------------------------------------
    def configure_optimizers(self):
        o = self.cfg.optim
        opts = [torch.optim.AdamW(module.parameters(), lr=float(c.lr), betas=tuple(c.betas),
                                  weight_decay=float(c.weight_decay))
                for module, c in ((self.vae, o.generator), (self.discriminator, o.discriminator))]
        s = o.scheduler
        scheds = [torch.optim.lr_scheduler.LambdaLR(opt, vae_schedule(s.name, float(s.gamma), int(s.warmup_steps)))
                  for opt in opts]
        return opts, scheds

    def _optimizer_name(self, optimizer) -> str | None:
        for name, opt in zip(("generator", "discriminator"), self.optimizers()):
            if optimizer is opt or optimizer is getattr(opt, "optimizer", None):
                return name
        return None

    def optimizer_name(self, optimizer) -> str | None:
        """"generator" / "discriminator" for an optimizer of this module (used by the grad-norm callback)."""
        return self._optimizer_name(optimizer)

    def on_before_optimizer_step(self, optimizer) -> None:
        # Lightning calls this after unscaling under 16-mixed (and there is no scaler under bf16),
        # so clipping here acts on the true gradients.
        name = self._optimizer_name(optimizer)
        clip = float(self.cfg.module.clip_grad_norm.get(name) or 0.0) if name else 0.0
        if clip > 0:
            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm")

    def _generator_terms(self, audio, out, recon, adversarial: bool) -> dict[str, torch.Tensor]:
        terms = {"mel/loss": self.mel_loss(recon, audio), "kl/loss": kl_loss(out["mu"], out["logvar"])}
        if self.lambdas.get("waveform/loss"):
            terms["waveform/loss"] = F.l1_loss(recon.float(), audio.float())
        if self.lambdas.get("stft/loss"):
            terms["stft/loss"] = self.stft_loss(recon, audio)
        if adversarial:
            fake = self.discriminator(recon)
            with torch.no_grad():
                real = self.discriminator(audio)
            kind = self.cfg.module.adversarial_loss
            terms["adv/gen_loss"] = generator_adversarial_loss(fake, kind)
            terms["adv/feat_loss"] = feature_matching_loss(real, fake)
        return terms

    def training_step(self, batch: dict, batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        sched_g, sched_d = self.lr_schedulers()
        audio = batch["audio"]
        accum = int(self.cfg.module.accumulate_grad_batches)
        boundary = (self._micro + 1) % accum == 0
        adversarial = self.adversarial and self.generator_step >= int(self.cfg.module.warmup_steps)
        self._micro += 1

        out = self.vae(audio)
        recon = out["audio"][..., : audio.shape[-1]]
        # a decoder with lookahead (iSTFT) fades its last samples: the loss sees the complete part
        keep = audio.shape[-1] - self.vae.lookahead_samples
        audio, recon = audio[..., :keep], recon[..., :keep]
        logs: dict[str, torch.Tensor] = {}

        if adversarial:  # discriminator step on the detached reconstruction
            self.toggle_optimizer(opt_d)
            d_loss = discriminator_loss(self.discriminator(audio), self.discriminator(recon.detach()),
                                        self.cfg.module.adversarial_loss)
            if self.usable({"adv/disc_loss": d_loss}, batch):
                self.manual_backward(d_loss / accum)
                if boundary:
                    self._guarded_step(opt_d, self.discriminator, "discriminator gradient", batch)
                    sched_d.step()
                logs["adv/disc_loss"] = d_loss.detach()
            self.untoggle_optimizer(opt_d)

        self.toggle_optimizer(opt_g)  # freezes the discriminator for the generator's backward
        terms = self._generator_terms(audio, out, recon, adversarial)
        total = self.weighted_loss(terms)
        if not self.usable({**terms, "loss": total}, batch):
            opt_g.zero_grad(set_to_none=True)  # nothing of this batch reaches the weights
            self.untoggle_optimizer(opt_g)
            if boundary:  # a skipped step still counts toward the budget (as Lightning's own steps do)
                sched_g.step()
                self.generator_step += 1
            return
        self.manual_backward(total / accum)
        if boundary:
            self._guarded_step(opt_g, self.vae, "generator gradient", batch)
            sched_g.step()
            self.generator_step += 1
            self._update_ema()
        self.untoggle_optimizer(opt_g)

        logs.update({k: v.detach() for k, v in terms.items()})
        logs["loss"] = total.detach()
        logs = {f"train/{k}": v for k, v in logs.items()}
        logs["train/generator_step"] = float(self.generator_step)
        logs["train/lr"] = sched_g.get_last_lr()[0]
        self.log("train/mel/loss", logs.pop("train/mel/loss"), prog_bar=True, batch_size=audio.shape[0])
        self.log_dict(logs, on_step=True, on_epoch=False, batch_size=audio.shape[0])

    def _guarded_step(self, optimizer, module, what: str, batch: dict) -> None:
        """Step unless a gradient is non-finite (then skip or stop, as `nonfinite.policy` says)."""
        if self.gradients_usable(module.parameters(), what, batch):
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.vae_ema is None:
            return
        ema = self.cfg.module.ema
        decay = float(ema.decay) if self.generator_step > int(ema.start_step) else 0.0
        for p_ema, p in zip(self.vae_ema.parameters(), self.vae.parameters()):
            p_ema.lerp_(p.detach(), 1.0 - decay)

    # ---- generator-step budget (trainer.max_steps = generator steps) -------------------------
    def on_fit_start(self) -> None:
        loop = self.trainer.fit_loop.epoch_loop
        if loop.max_steps is not None and loop.max_steps > 0:
            self._budget = int(loop.max_steps)
            loop.max_steps = -1  # Lightning would count discriminator steps too

    def _budget_reached(self) -> bool:
        return self._budget is not None and self.generator_step >= self._budget

    def on_train_batch_start(self, batch, batch_idx: int):
        if self._budget_reached():
            self.trainer.should_stop = True
            return -1  # ends the epoch without training on this batch
        return None

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self._budget_reached():
            self.trainer.should_stop = True

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["generator_step"] = self.generator_step

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self.generator_step = int(checkpoint.get("generator_step", 0))

    # ---- validation ---------------------------------------------------------------------------
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        audio, lens = batch["audio"], batch["audio_lens"]
        recon = self.reconstruct(audio)
        mel_l1, stft = [], []
        for i in range(audio.shape[0]):  # per item, so padding does not dilute the metrics
            x, y = audio[i : i + 1, :, : lens[i]].float(), recon[i : i + 1, :, : lens[i]].float()
            short = self.val_mel.n_fft // 2 + 1 - x.shape[-1]
            if short > 0:  # the centred STFT's reflect padding needs a longer input
                x, y = F.pad(x, (0, short)), F.pad(y, (0, short))
            mel_l1.append(F.l1_loss(self.val_mel(y), self.val_mel(x)))
            stft.append(self.stft_loss(y, x))
            scores = codec_scores(recon[i, :, : lens[i]], audio[i, :, : lens[i]], int(self.cfg.data.sample_rate))
            for metric, value in ((self.val_pesq, scores["pesq_wb"]), (self.val_stoi, scores["stoi"])):
                if value is not None:
                    metric.update(value)
        bs = audio.shape[0]
        self.log("val/mel_l1", torch.stack(mel_l1).mean(), batch_size=bs, prog_bar=True, sync_dist=True)
        self.log("val/stft_distance", torch.stack(stft).mean(), batch_size=bs, sync_dist=True)
        # logged on every rank (a metric object syncs at the epoch's end); NaN only when no item was long enough
        self.log("val/pesq_wb", self.val_pesq, batch_size=bs)
        self.log("val/stoi", self.val_stoi, batch_size=bs)
        self.log("val/generator_step", float(self.generator_step), batch_size=bs, sync_dist=True)

    def num_parameters(self) -> dict[str, int]:
        return {"generator": sum(p.numel() for p in self.vae.parameters()),
                "discriminator": sum(p.numel() for p in self.discriminator.parameters())}

