"""Logs the gradient norm of each optimizer's parameters before it steps.

Runs in `on_before_optimizer_step`, which Lightning calls after unscaling under 16-mixed and before
the module's own hook (where the AudioVAE module clips), so the logged norm is the true, unclipped one.
Names come from the module's `optimizer_name(optimizer)` when it has one (`grad_norm/generator`),
else the optimizer's index (`grad_norm/opt0`).
"""
from __future__ import annotations

import lightning as L
import torch


def grad_norm(optimizer: torch.optim.Optimizer, norm_type: float = 2.0) -> torch.Tensor | None:
    grads = [p.grad.detach().float() for group in optimizer.param_groups for p in group["params"]
             if p.grad is not None]
    if not grads:
        return None
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, norm_type) for g in grads]), norm_type)


class GradNormCallback(L.Callback):
    def __init__(self, norm_type: float = 2.0, prefix: str = "grad_norm"):
        self.norm_type, self.prefix = float(norm_type), prefix
        self.last: dict[str, float] = {}  # latest norms, for tests and debugging

    def _name(self, pl_module: L.LightningModule, optimizer) -> str:
        namer = getattr(pl_module, "optimizer_name", None)
        name = namer(optimizer) if callable(namer) else None
        if name:
            return name
        opts = pl_module.optimizers(use_pl_optimizer=False)
        opts = opts if isinstance(opts, list) else [opts]
        return next((f"opt{i}" for i, o in enumerate(opts) if o is optimizer), "opt")

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        norm = grad_norm(optimizer, self.norm_type)
        if norm is None:
            return
        name = self._name(pl_module, optimizer)
        self.last[name] = float(norm)
        pl_module.log(f"{self.prefix}/{name}", norm, on_step=True, on_epoch=False, batch_size=1)
