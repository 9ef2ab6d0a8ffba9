"""LocEnc: a bidirectional MiniCPM stack over [learned CLS token, the P latent frames of one patch];
the CLS output is the patch embedding `E` (docs/design.md section 3)."""
from __future__ import annotations

import torch
import torch.nn as nn

from models.minicpm import MiniCPMConfig, MiniCPMModel


class LocEnc(nn.Module):
    def __init__(self, config: MiniCPMConfig, input_dim: int = 64):
        super().__init__()
        self.special_token = nn.Parameter(torch.randn(1, 1, 1, config.hidden_size))  # the CLS token
        self.in_proj = nn.Linear(input_dim, config.hidden_size)
        self.encoder = MiniCPMModel(config)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """patches [..., P, D] -> patch embeddings [..., hidden]. Each patch is encoded alone."""
        *lead, p, d = patches.shape
        x = self.in_proj(patches.reshape(-1, p, d))
        cls = self.special_token.reshape(1, 1, -1).expand(x.shape[0], 1, -1).to(x.dtype)
        out = self.encoder(torch.cat([cls, x], dim=1), is_causal=False)
        return out[:, 0].reshape(*lead, out.shape[-1])
