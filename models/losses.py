"""Loss terms of the AudioVAE, each computed in fp32 and named as it is logged.

The generator's terms go into a dict keyed by name (`mel/loss`, `adv/gen_loss`, `adv/feat_loss`,
`kl/loss`, `waveform/loss`, `stft/loss`); `weighted_total` sums the terms that exist times their
weight in `lambdas` (DAC's convention).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from voxlab.audio import MelSpectrogram


def _fp32(*xs: torch.Tensor) -> list[torch.Tensor]:
    return [x.float() for x in xs]


class MultiScaleMelLoss(nn.Module):
    """Mean over scales of the L1 distance between log-mel spectrograms (natural log, floored),
    one scale per (window length, n_mels) pair, hop = window / 4."""

    def __init__(self, sample_rate: int = 16000,
                 window_lengths: Sequence[int] = (32, 64, 128, 256, 512, 1024, 2048),
                 n_mels: Sequence[int] = (5, 10, 20, 40, 80, 160, 320), log_floor: float = 1e-5):
        super().__init__()
        if len(window_lengths) != len(n_mels):
            raise ValueError(f"mel loss: {len(window_lengths)} window_lengths but {len(n_mels)} n_mels")
        self.mels = nn.ModuleList(
            MelSpectrogram(sample_rate, n_fft=w, hop_length=w // 4, n_mels=m, power=1.0, log=True,
                           log_floor=log_floor)
            for w, m in zip(window_lengths, n_mels))

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        with torch.autocast(fake.device.type, enabled=False):
            fake, real = _fp32(fake, real)
            return torch.stack([F.l1_loss(mel(fake), mel(real)) for mel in self.mels]).mean()


class MultiResolutionSTFTLoss(nn.Module):
    """Mean over resolutions of spectral convergence + L1 of log magnitudes (Parallel WaveGAN's
    distance); used as `val/stft_distance` and, with a lambda, as the `stft/loss` term."""

    def __init__(self, resolutions: Sequence[Sequence[int]] = ((2048, 512), (1024, 256), (512, 128)),
                 eps: float = 1e-5):
        super().__init__()
        self.resolutions = [(int(r[0]), int(r[1])) for r in resolutions]
        self.eps = eps
        for n_fft, _ in self.resolutions:
            self.register_buffer(f"window_{n_fft}", torch.hann_window(n_fft), persistent=False)

    def _mag(self, wav: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
        wav = wav.reshape(-1, wav.shape[-1])
        if wav.shape[-1] <= n_fft // 2:  # the centred STFT's reflect padding needs a longer input
            wav = F.pad(wav, (0, n_fft // 2 + 1 - wav.shape[-1]))
        spec = torch.stft(wav, n_fft, hop, window=getattr(self, f"window_{n_fft}"), return_complex=True)
        return (spec.real.square() + spec.imag.square() + self.eps ** 2).sqrt()  # finite gradient at |0|

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        with torch.autocast(fake.device.type, enabled=False):
            fake, real = _fp32(fake, real)
            total = []
            for n_fft, hop in self.resolutions:
                x, y = self._mag(fake, n_fft, hop), self._mag(real, n_fft, hop)
                sc = torch.linalg.norm(y - x) / torch.linalg.norm(y).clamp(min=self.eps)
                total.append(sc + F.l1_loss(torch.log(x), torch.log(y)))
            return torch.stack(total).mean()


def kl_loss(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)), averaged over every latent element (nats per dimension)."""
    mu, logvar = _fp32(mu, logvar)
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).mean()


def discriminator_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]],
                       kind: str = "lsgan") -> torch.Tensor:
    """Sum over sub-discriminators; the logits are the last entry of each feature list."""
    total = 0.0
    for r, f in zip(real, fake):
        r, f = r[-1].float(), f[-1].float()
        if kind == "lsgan":
            total = total + (1 - r).pow(2).mean() + f.pow(2).mean()
        elif kind == "hinge":
            total = total + F.relu(1 - r).mean() + F.relu(1 + f).mean()
        else:
            raise ValueError(f"adversarial loss {kind!r}: expected 'lsgan' or 'hinge'")
    return total


def generator_adversarial_loss(fake: list[list[torch.Tensor]], kind: str = "lsgan") -> torch.Tensor:
    total = 0.0
    for f in fake:
        f = f[-1].float()
        if kind == "lsgan":
            total = total + (1 - f).pow(2).mean()
        elif kind == "hinge":
            total = total - f.mean()
        else:
            raise ValueError(f"adversarial loss {kind!r}: expected 'lsgan' or 'hinge'")
    return total


def feature_matching_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Sum over sub-discriminators and layers (logits excluded) of the mean L1 distance."""
    total = 0.0
    for r, f in zip(real, fake):
        for fr, ff in zip(r[:-1], f[:-1]):
            total = total + F.l1_loss(ff.float(), fr.detach().float())
    return total


def weighted_total(terms: Mapping[str, torch.Tensor], lambdas: Mapping[str, float]) -> torch.Tensor:
    """Sum of lambda * term over the terms present that have a non-zero weight."""
    used = [lambdas[name] * value for name, value in terms.items() if lambdas.get(name, 0.0)]
    if not used:
        raise ValueError(f"no loss term has a non-zero weight: terms {sorted(terms)}, lambdas {dict(lambdas)}")
    return torch.stack([torch.as_tensor(u) for u in used]).sum()
