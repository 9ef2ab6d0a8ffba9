"""What the VoxLab LightningModules share: the config they are built from (written into every
checkpoint, `voxlab.checkpoint`), the weighted sum of named loss terms, the logging of those
terms under their names, and the non-finite guard on losses and gradients
(`lightning_modules.nonfinite`; `nonfinite.policy` skip | stop).
"""
from __future__ import annotations

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from lightning_modules.nonfinite import NonFiniteLoss, any_rank, check_terms, describe, grads_finite
from models.losses import weighted_total
from voxlab.checkpoint import write_config


class VoxLabModule(L.LightningModule):
    def __init__(self, config: DictConfig | dict, lambdas: dict | None = None):
        super().__init__()
        self.config = config if isinstance(config, DictConfig) else OmegaConf.create(config)
        self.lambdas = {str(k): float(v) for k, v in (lambdas or {}).items()}
        self.nonfinite_policy = OmegaConf.select(self.config, "nonfinite.policy") or "skip"
        self.nonfinite_skips = 0

    def weighted_loss(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sum of `module.lambdas[name] * term` over the named terms with a non-zero weight."""
        return weighted_total(terms, self.lambdas)

    def usable(self, terms: dict[str, torch.Tensor], batch: dict) -> bool:
        """False for a batch with a non-finite term (skipped, or NonFiniteLoss under `stop`)."""
        return check_terms(self, terms, batch, self.nonfinite_policy)

    def gradients_usable(self, parameters, what: str, batch: dict) -> bool:
        """False when a gradient of `parameters` is non-finite on any rank: the step is skipped
        (counted) or, under `stop`, NonFiniteLoss is raised. A finite loss can still give them."""
        if not any_rank(not grads_finite(parameters), self.device):
            return True
        message = describe(self.global_step, [what], batch)
        if self.nonfinite_policy == "stop":
            raise NonFiniteLoss(message + " (nonfinite.policy=stop)")
        self.nonfinite_skips += 1
        print(f"[nonfinite] skipping optimizer step: {message}")
        return False

    def log_terms(self, prefix: str, terms: dict[str, torch.Tensor], batch_size: int, **kw) -> None:
        """Each term as `<prefix>/<name>` (e.g. train/flow/loss)."""
        self.log_dict({f"{prefix}/{k}": v.detach() for k, v in terms.items()}, batch_size=batch_size, **kw)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        write_config(checkpoint, OmegaConf.to_container(self.config, resolve=True))
        checkpoint["nonfinite_skips"] = self.nonfinite_skips

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.nonfinite_skips = int(checkpoint.get("nonfinite_skips", 0))
