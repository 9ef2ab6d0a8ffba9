"""FSQ: the semi-discrete bottleneck between the TSLM and the RALM (paper "d256s9").

Linear(in -> latent_dim), tanh, round(x * scale) / scale, Linear(latent_dim -> out). In training the
rounding passes gradients straight through (the forward value is the rounded one); in eval the
rounded value is used directly. `quantize=False` keeps the same projection without rounding
(the `nofsq_*` ablation).
"""
from __future__ import annotations

import torch
import torch.nn as nn


class FSQ(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, latent_dim: int = 256, scale: float = 9, quantize: bool = True):
        super().__init__()
        self.latent_dim, self.scale, self.quantize = latent_dim, scale, quantize
        self.in_proj = nn.Linear(in_dim, latent_dim)
        self.out_proj = nn.Linear(latent_dim, out_dim)

    def latent(self, hidden: torch.Tensor) -> torch.Tensor:
        """The bottleneck value before `out_proj`: on the grid k / scale, |k| <= scale, when quantising."""
        z = torch.tanh(self.in_proj(hidden))
        if not self.quantize:
            return z
        q = torch.round(z * self.scale) / self.scale
        return z + (q - z).detach() if self.training else q

    def codes(self, hidden: torch.Tensor) -> torch.Tensor:
        """Integer codes in [-scale, scale] (for analysis)."""
        return torch.round(torch.tanh(self.in_proj(hidden)) * self.scale).long()

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.latent(hidden))
