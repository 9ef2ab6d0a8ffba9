"""The backbone's LightningModule: flow matching + stop CE, weighted by `module.lambdas`.

Loss terms are logged under their names (`train/flow/loss`, `train/stop/loss`, `train/loss`);
`module.lambdas` weighs them by the same names. The module is handed its pieces by the entry
point (voxlab.cli.train): the frozen AudioVAE and the tokenizer (both travel inside every
checkpoint, so a checkpoint alone synthesises speech: models.load) and, for a run that starts
from scratch, the folder of the pretrained text LM the TSLM is initialised from (`model.lm_init`).
A resumed run takes everything from its checkpoint.
"""
from __future__ import annotations

from pathlib import Path

import torch

from lightning_modules.base import VoxLabModule
from lightning_modules.schedules import by_shares
from models.tts import TTSModel
from models.weights import audiovae_from_payload, audiovae_payload
from voxlab.checkpoint import TOKENIZER_KEY, VAE_KEY
from voxlab.config import instantiate
from voxlab.text import build_tokenizer, tokenizer_spec

TERMS = {"flow/loss": "flow_loss", "stop/loss": "stop_loss", "align/loss": "align_loss", "phone/loss": "phone_loss"}


class TTSModule(VoxLabModule):
    @staticmethod
    def build_network(config):
        """The backbone of `config.model` (voxlab.cli.model_size builds it on the meta device to size it)."""
        return instantiate(config.model)

    def __init__(self, config, vae=None, tokenizer=None, lm_init: str | Path | None = None):
        """`vae` (models.AudioVAE) and `tokenizer` (voxlab.text) are recorded for the checkpoint
        (kept as plain data, not as submodules: never trained); `lm_init`: the LM folder to
        initialise the TSLM from (None: no LM init, or the weights come from a checkpoint)."""
        super().__init__(config, config.module.lambdas)
        self.model = self.build_network(config)
        unknown = set(self.lambdas) - set(TERMS)
        if unknown:
            raise ValueError(f"module.lambdas: unknown term(s) {sorted(unknown)}; terms: {sorted(TERMS)}")

        self.vae_payload: dict = audiovae_payload(vae) if vae is not None else {}
        self.tokenizer_payload: dict = tokenizer_spec(tokenizer) if tokenizer is not None else {}
        if lm_init is not None:
            report = self.model.apply_lm_init(tokenizer=tokenizer, path=lm_init)
            if report:
                print(f"[lm_init] {report}")

    def tts_model(self):
        """A models.tts.TTSModel sharing this module's backbone (evaluation callbacks), built once and
        returned in eval mode; the VAE follows the module's device. The backbone is shared, so the
        caller puts the module back in train mode afterwards."""
        model = self.__dict__.get("_tts_model")
        if model is None:
            if not self.vae_payload:
                raise RuntimeError("TTSModule.tts_model: no VAE (the entry point hands it in, a checkpoint restores it)")

            vae = audiovae_from_payload(self.vae_payload, "TTSModule")
            tokenizer = build_tokenizer(self.tokenizer_payload, f"TTSModule ({TOKENIZER_KEY})")
            model = TTSModel(self.model, vae, tokenizer)
            self.__dict__["_tts_model"] = model  # plain attribute: not a submodule, not in the state_dict
        model.vae.to(self.device)
        return model.eval()

    def _losses(self, batch: dict, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        raw = self.model(batch, generator=generator)
        terms = {name: raw[key] for name, key in TERMS.items() if key in raw}  # align: training only
        terms["loss"] = self.weighted_loss(terms)
        return terms

    def training_step(self, batch, batch_idx):
        terms = self._losses(batch)
        if not self.usable(terms, batch):
            return None  # Lightning skips the optimizer step for this batch
        self.log_terms("train", terms, len(batch["utt"]), prog_bar=False, sync_dist=True)
        self.log("train/patches", batch["loss_mask"].sum().float(), batch_size=len(batch["utt"]),
                 reduce_fx="sum", sync_dist=True)
        return terms["loss"]

    def on_before_optimizer_step(self, optimizer):
        if not self.gradients_usable(self.parameters(), "gradient", {}):
            optimizer.zero_grad(set_to_none=True)  # Lightning's step then has nothing to apply

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[VAE_KEY] = self.vae_payload
        checkpoint[TOKENIZER_KEY] = self.tokenizer_payload

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self.vae_payload = checkpoint.get(VAE_KEY) or {}
        self.tokenizer_payload = checkpoint.get(TOKENIZER_KEY) or {}
        self.__dict__.pop("_tts_model", None)  # built from the payloads just replaced

    def validation_step(self, batch, batch_idx):
        # Fixed flow-matching noise and times, so validation losses are comparable across steps.
        gen = torch.Generator(device=self.device).manual_seed(1000 + batch_idx)
        terms = self._losses(batch, generator=gen)
        self.log_terms("val", terms, len(batch["utt"]), prog_bar=True, sync_dist=True)

    def configure_optimizers(self):
        opt_cfg = self.config.optim
        params = [p for p in self.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]  # norms and biases
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": opt_cfg.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}],
                                      lr=opt_cfg.lr, betas=tuple(opt_cfg.betas), eps=opt_cfg.eps)
        sched = opt_cfg.schedule
        total = self.trainer.max_steps if self.trainer.max_steps > 0 else int(self.trainer.estimated_stepping_batches)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, by_shares(sched.name, total, sched.warmup, sched.decay, sched.min_ratio))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
