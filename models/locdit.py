"""LocDiT: the per-patch flow-matching decoder, and the flow-matching training loss around it.

The estimator is a bidirectional MiniCPM stack over [mu + time embedding, previous patch, noisy
patch] (VoxCPM; mu [N, H]), or [mu tokens, time embedding, previous patch, noisy patch] (the VoxCPM2
DiT; mu [N, k, H]: the TSLM and RALM projections as k separate tokens); the last P outputs, projected back to the latent size, are the predicted velocity. The time
embedding is sinusoidal (scale 1000) through an MLP; a second MLP embeds the step size `dt` of
mean-velocity models, always 0 here (its constant output still enters, as in the official code).

Flow matching (docs/design.md section 4): y = (1 - t) x + t z with z ~ N(0, I), target v = z - x,
t = sigmoid(N(t_mean, t_std)), condition dropout (mu = 0) with probability `cfg_dropout` for
classifier-free guidance. t = 1 is pure noise; sampling integrates from t = 1 to 0.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.minicpm import MiniCPMConfig, MiniCPMModel


def timestep_embedding(t: torch.Tensor, dim: int, scale: float = 1000.0) -> torch.Tensor:
    """t [N] -> [N, dim]: sin and cos of scale * t at geometric frequencies 1 .. 1/10000."""
    half = dim // 2
    freq = torch.exp(torch.arange(half, dtype=t.dtype, device=t.device) * -(math.log(10000) / (half - 1)))
    arg = scale * t.unsqueeze(1) * freq.unsqueeze(0)
    return torch.cat((arg.sin(), arg.cos()), dim=-1)


def condition_tokens(mu: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
    """The tokens in front of the previous patch: [mu + temb] for a summed condition mu [N, H];
    [mu_1 .. mu_k, temb] for prefix tokens mu [N, k, H] (VoxCPM2). temb: [N, H]."""
    if mu.dim() == 3:
        return torch.cat([mu, temb.unsqueeze(1)], dim=1)
    return (mu + temb).unsqueeze(1)


class TimestepMLP(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))


class LocDiT(nn.Module):
    def __init__(self, config: MiniCPMConfig, in_channels: int = 64):
        super().__init__()
        h = config.hidden_size
        if h % 2:
            raise ValueError(f"LocDiT hidden size must be even for the time embedding, got {h}")
        self.in_proj = nn.Linear(in_channels, h)
        self.cond_proj = nn.Linear(in_channels, h)
        self.out_proj = nn.Linear(h, in_channels)
        self.time_mlp = TimestepMLP(h)
        self.delta_time_mlp = TimestepMLP(h)
        self.decoder = MiniCPMModel(config)

    def forward(self, x: torch.Tensor, mu: torch.Tensor, t: torch.Tensor, cond: torch.Tensor,
                dt: torch.Tensor | None = None) -> torch.Tensor:
        """x: noisy patch [N, P, D]; mu: condition [N, hidden] (summed) or [N, k, hidden] (prefix
        tokens); t: [N]; cond: previous patch [N, P', D]; dt: [N] or None (= 0). Returns the velocity [N, P, D]."""
        xh = self.in_proj(x)
        ch = self.cond_proj(cond)
        dim = xh.shape[-1]
        temb = self.time_mlp(timestep_embedding(t, dim).to(xh.dtype))
        if dt is None:  # one row for the constant dt = 0, broadcast
            dt = torch.zeros(1, dtype=t.dtype, device=t.device)
        temb = temb + self.delta_time_mlp(timestep_embedding(dt, dim).to(xh.dtype))
        head = condition_tokens(mu, temb.expand(xh.shape[0], -1))
        seq = torch.cat([head, ch, xh], dim=1)
        out = self.decoder(seq, is_causal=False)[:, head.shape[1] + ch.shape[1]:]
        return self.out_proj(out)


class FlowMatching(nn.Module):
    """`feat_decoder` of the checkpoint: holds the LocDiT `estimator` and its training loss."""

    def __init__(self, estimator: LocDiT, cfg_dropout: float = 0.1, t_mean: float = -0.4, t_std: float = 1.0,
                 repeats: int = 1):
        super().__init__()
        if int(repeats) < 1:
            raise ValueError(f"model.flow.repeats must be at least 1, got {repeats}")
        self.estimator = estimator
        self.cfg_dropout, self.t_mean, self.t_std, self.repeats = cfg_dropout, t_mean, t_std, int(repeats)

    def loss(self, x1: torch.Tensor, mu: torch.Tensor, cond: torch.Tensor, *, t=None, noise=None,
             cfg_keep=None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean squared velocity error over all target elements.

        x1: target patches [N, P, D]; mu: [N, hidden]; cond: previous patches [N, P, D].
        t [N], noise [N, P, D], cfg_keep bool [N] may be given (tests, fixed validation noise);
        otherwise drawn from `generator` (or the global RNG), `repeats` draws per patch.
        """
        n = x1.shape[0]
        if n == 0:
            return x1.sum() * 0.0 + mu.sum() * 0.0
        if self.repeats > 1 and t is None and noise is None and cfg_keep is None:
            k = self.repeats  # the same patches and conditions k times, each with its own draw
            x1, cond = x1.repeat(k, *[1] * (x1.dim() - 1)), cond.repeat(k, *[1] * (cond.dim() - 1))
            mu = mu.repeat(k, *[1] * (mu.dim() - 1))
            n = x1.shape[0]
        kw = dict(device=x1.device, generator=generator)
        if cfg_keep is None:
            cfg_keep = torch.rand(n, **kw) >= self.cfg_dropout
        if t is None:
            t = torch.sigmoid(torch.randn(n, **kw) * self.t_std + self.t_mean)
        if noise is None:
            noise = torch.randn(x1.shape, **kw)
        t = t.to(x1.dtype)
        noise = noise.to(x1.dtype)
        mu = mu * cfg_keep.to(mu.dtype).view(-1, *[1] * (mu.dim() - 1))
        tt = t.view(-1, 1, 1)
        y = (1 - tt) * x1 + tt * noise
        pred = self.estimator(y, mu, t, cond)
        return F.mse_loss(pred.float(), (noise - x1).float())
