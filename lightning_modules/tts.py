"""The backbone's LightningModule: flow matching + stop CE, weighted by `module.lambdas`.

Loss terms are logged under their names (`train/flow/loss`, `train/stop/loss`, `train/loss`);
`module.lambdas` weighs them by the same names. The TSLM is initialised from a pretrained text
LM (`model.lm_init`) once, when a run starts from scratch; a resumed run takes its weights from
the checkpoint.
"""
from __future__ import annotations

import lightning as L
import torch

from lightning_modules.nonfinite import NonFiniteLoss, any_rank, check_terms, describe, grads_finite
from lightning_modules.schedules import lr_lambda
from voxlab.config import instantiate

TERMS = {"flow/loss": "flow_loss", "stop/loss": "stop_loss"}


class TTSModule(L.LightningModule):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.model = instantiate(config.model)
        self.lambdas = dict(config.module.lambdas)
        # The frozen VAE and the tokenizer travel inside every checkpoint, so a checkpoint alone
        # synthesises speech (models.load). Kept as plain data, not as a submodule: never trained.
        self.nonfinite_policy = config.nonfinite.policy
        self.nonfinite_skips = 0
        self.vae_payload: dict = {}
        self.tokenizer_payload: dict = {}
        unknown = set(self.lambdas) - set(TERMS)
        if unknown:
            raise ValueError(f"module.lambdas: unknown term(s) {sorted(unknown)}; terms: {sorted(TERMS)}")

    def setup(self, stage: str) -> None:
        if stage == "fit" and not self.vae_payload:
            self._attach_vae_and_tokenizer()
        if stage == "fit" and self.trainer.ckpt_path is None:
            from voxlab.cli.lm import ensure_lm
            from voxlab.text import build_tokenizer

            ensure_lm(self.config)
            report = self.model.apply_lm_init(tokenizer=build_tokenizer(self.config.text))
            if report:
                print(f"[lm_init] {report}")

    def _attach_vae_and_tokenizer(self) -> None:
        from datamodules.tts import resolve_vae_path
        from models import load_audiovae
        from voxlab.text import build_tokenizer

        vae = load_audiovae(resolve_vae_path(self.config))
        self.vae_payload = {"config": vae.config(), "state_dict": {k: v.detach().cpu() for k, v in vae.state_dict().items()}}
        tok = build_tokenizer(self.config.text)
        self.tokenizer_payload = ({"kind": "char", "chars": list(tok.chars)} if tok.kind == "char"
                                  else {"kind": "hf", "path": str(self.config.text.path)})

    def tts_model(self):
        """A models.tts.TTSModel sharing this module's backbone (evaluation callbacks), built once and
        returned in eval mode; the VAE follows the module's device. The backbone is shared, so the
        caller puts the module back in train mode afterwards."""
        model = self.__dict__.get("_tts_model")
        if model is None:
            if not self.vae_payload:
                raise RuntimeError("TTSModule.tts_model: no VAE attached yet (setup('fit') or a checkpoint attaches it)")
            from models.audiovae import AudioVAE
            from models.tts import TTSModel
            from models.tts_io import _tokenizer_from_spec
            from models.weights import load_strict

            spec = self.vae_payload
            vae = AudioVAE(**{k: v for k, v in spec["config"].items() if k != "_target_"})
            load_strict(vae, spec["state_dict"], "TTSModule.vae_payload")
            tokenizer = _tokenizer_from_spec(self.tokenizer_payload, "TTSModule.tokenizer_payload")
            model = TTSModel(self.model, vae, tokenizer)
            self.__dict__["_tts_model"] = model  # plain attribute: not a submodule, not in the state_dict
        model.vae.to(self.device)
        return model.eval()

    def _losses(self, batch: dict, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        raw = self.model(batch, generator=generator)
        terms = {name: raw[key] for name, key in TERMS.items()}
        terms["loss"] = sum(self.lambdas.get(name, 0.0) * value for name, value in terms.items())
        return terms

    def _log_terms(self, prefix: str, terms: dict, batch_size: int, **kw) -> None:
        self.log_dict({f"{prefix}/{k}": v.detach() for k, v in terms.items()}, batch_size=batch_size,
                      sync_dist=True, **kw)

    def training_step(self, batch, batch_idx):
        terms = self._losses(batch)
        if not check_terms(self, terms, batch, self.nonfinite_policy):
            return None  # Lightning skips the optimizer step for this batch
        self._log_terms("train", terms, len(batch["utt"]), prog_bar=False)
        self.log("train/patches", batch["loss_mask"].sum().float(), batch_size=len(batch["utt"]),
                 reduce_fx="sum", sync_dist=True)
        return terms["loss"]

    def on_before_optimizer_step(self, optimizer):
        # A finite loss can still give non-finite gradients: drop them rather than step into NaN weights.
        if any_rank(not grads_finite(self.parameters()), self.device):
            message = describe(self.global_step, ["gradient"], {})
            if self.nonfinite_policy == "stop":
                raise NonFiniteLoss(message + " (nonfinite.policy=stop)")
            self.nonfinite_skips += 1
            print(f"[nonfinite] skipping optimizer step: {message}")
            optimizer.zero_grad(set_to_none=True)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["voxlab_vae"] = self.vae_payload
        checkpoint["voxlab_tokenizer"] = self.tokenizer_payload
        checkpoint["nonfinite_skips"] = self.nonfinite_skips

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.vae_payload = checkpoint.get("voxlab_vae") or {}
        self.tokenizer_payload = checkpoint.get("voxlab_tokenizer") or {}
        self.nonfinite_skips = int(checkpoint.get("nonfinite_skips", 0))

    def validation_step(self, batch, batch_idx):
        # Fixed flow-matching noise and times, so validation losses are comparable across steps.
        gen = torch.Generator(device=self.device).manual_seed(1000 + batch_idx)
        terms = self._losses(batch, generator=gen)
        self._log_terms("val", terms, len(batch["utt"]), prog_bar=True)

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
            optimizer, lr_lambda(sched.name, total, sched.warmup, sched.decay, sched.min_ratio))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
