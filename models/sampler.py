"""LocDiT sampling: Euler from t = 1 (noise) to t = 0 with sway sampling, classifier-free guidance
with CFG-Zero*, and a temperature on the initial noise (docs/design.md section 5).

Numbers follow the official solver (voxcpm 2.0.3 `UnifiedCFM`):
- time grid: t_k = linspace(1, 0, n + 1), then t + coef * (cos(pi/2 t) - 1 + t) (sway, coef 1);
- the step's t and dt follow the official recurrence (t -= dt; dt = t - t_{k+1}), so the floats agree;
- CFG: the unconditional branch is the same estimator call with mu = 0, in one batch with the
  conditional one; CFG-Zero*: s* = <v_c, v_u> / (|v_u|^2 + 1e-8) per item, v = s* v_u + cfg (v_c - s* v_u);
  the first max(1, int(0.04 (n + 1))) steps use v = 0;
- noise: N(0, I) drawn as [D, P] per item (the official layout), times the temperature.

Work done once per utterance rather than per step: the time embeddings of every step and the
constant dt = 0 embedding, and the projection of the previous patch (per patch). The estimator's
own `forward` is not used on the hot path; `tests/test_inference.py` checks `velocity` against it.
"""
from __future__ import annotations

import math

import torch

from models.locdit import LocDiT, condition_tokens, timestep_embedding

SWAY_COEF = 1.0
ZERO_STAR_EPS = 1e-8


def sway_timesteps(n: int, coef: float = SWAY_COEF, dtype=torch.float32, device=None) -> torch.Tensor:
    """[n + 1] times from 1 down to 0, bent towards t = 1 (sway sampling)."""
    t = torch.linspace(1, 0, n + 1, dtype=dtype, device=device)
    return t + coef * (torch.cos(math.pi / 2 * t) - 1 + t)


def euler_schedule(t_span: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(t, dt) of each Euler step, computed by the official recurrence (not t_span[k] directly)."""
    t, dt, out = t_span[0], t_span[0] - t_span[1], []
    n = len(t_span) - 1
    for step in range(1, n + 1):
        out.append((t, dt))
        t = t - dt
        if step < n:
            dt = t - t_span[step + 1]
    return out


def zero_init_steps(n: int) -> int:
    """CFG-Zero*: how many first steps keep the sample unchanged (v = 0)."""
    return max(1, int((n + 1) * 0.04))


def cfg_zero_star(v_cond: torch.Tensor, v_uncond: torch.Tensor, cfg: float) -> torch.Tensor:
    """Guided velocity with the optimised scale s* (per item, over all of its elements)."""
    b = v_cond.shape[0]
    pos, neg = v_cond.reshape(b, -1), v_uncond.reshape(b, -1)
    s = (pos * neg).sum(1, keepdim=True) / ((neg * neg).sum(1, keepdim=True) + ZERO_STAR_EPS)
    s = s.view(b, *([1] * (v_cond.dim() - 1)))
    return v_uncond * s + cfg * (v_cond - v_uncond * s)


class PatchSampler:
    """Samples one latent patch per item from its LocDiT condition `mu` and previous patch.

    Built once per generation (timesteps, cfg and dtype fixed); call it once per patch.
    """

    def __init__(self, estimator: LocDiT, timesteps: int = 10, cfg: float = 2.0, sway: float = SWAY_COEF,
                 use_zero_star: bool = True, dtype=torch.float32, device=None):
        if timesteps < 1:
            raise ValueError(f"timesteps must be >= 1, got {timesteps}")
        self.est, self.cfg, self.use_zero_star = estimator, float(cfg), use_zero_star
        self.schedule = euler_schedule(sway_timesteps(timesteps, sway, dtype, device))
        self.skip = zero_init_steps(timesteps) if use_zero_star else 0
        h = estimator.in_proj.out_features
        ts = torch.stack([t for t, _ in self.schedule])
        temb = estimator.time_mlp(timestep_embedding(ts, h).to(dtype))
        dt0 = estimator.delta_time_mlp(timestep_embedding(torch.zeros(1, dtype=dtype, device=device), h).to(dtype))
        self.temb = temb + dt0  # [timesteps, H]: what the estimator adds to mu at each step

    def velocity(self, x: torch.Tensor, mu: torch.Tensor, cond_h: torch.Tensor, step: int) -> torch.Tensor:
        """Estimator output for x [N, P, D], condition mu [N, H] or [N, k, H] (prefix tokens),
        projected previous patch [N, P', H]."""
        est = self.est
        head = condition_tokens(mu, self.temb[step].expand(mu.shape[0], -1))
        seq = torch.cat([head, cond_h, est.in_proj(x)], dim=1)
        return est.out_proj(est.decoder(seq, is_causal=False)[:, head.shape[1] + cond_h.shape[1]:])

    def __call__(self, mu: torch.Tensor, cond: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """mu [B, H] or [B, k, H], cond (previous patch) [B, P, D], noise [B, P, D] (already temperature-scaled)
        -> the sampled patch [B, P, D]."""
        b = mu.shape[0]
        guided = self.cfg != 1.0  # cfg = 1: the guided velocity is the conditional one
        cond_h = self.est.cond_proj(cond)
        if guided:  # conditional and unconditional (mu = 0) branches in one batch
            mu = torch.cat([mu, torch.zeros_like(mu)])
            cond_h = torch.cat([cond_h, cond_h])
        x = noise
        for step, (_, dt) in enumerate(self.schedule):
            if step >= self.skip:
                v = self.velocity(torch.cat([x, x]) if guided else x, mu, cond_h, step)
                if guided:
                    v_c, v_u = v[:b], v[b:]
                    v = cfg_zero_star(v_c, v_u, self.cfg) if self.use_zero_star else v_u + self.cfg * (v_c - v_u)
                x = x - dt * v
        return x


def draw_noise(n: int, patch_size: int, dim: int, temperature: float, generators=None, dtype=torch.float32,
               device=None) -> torch.Tensor:
    """[n, P, D] initial noise times `temperature`; item i from generators[i] (or the global RNG).

    Drawn as [D, P] and transposed, so one item seeded s equals the official draw after
    torch.manual_seed(s). Temperature 0 draws nothing (deterministic)."""
    if temperature == 0:
        return torch.zeros(n, patch_size, dim, dtype=dtype, device=device)
    gens = generators if generators is not None else [None] * n
    z = torch.stack([torch.randn(dim, patch_size, generator=g, device=g.device if g is not None else None)
                     for g in gens])
    return (z.to(device=device, dtype=dtype) * temperature).transpose(1, 2)
