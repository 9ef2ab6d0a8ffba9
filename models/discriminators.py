"""GAN discriminators for the AudioVAE: multi-period (HiFi-GAN style) and multi-resolution STFT.

Every discriminator returns the list of its feature maps with the logits last; the wrappers
return one such list per sub-discriminator, which is what `models.losses` consumes.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

FeatureMaps = list[torch.Tensor]


class PeriodDiscriminator(nn.Module):
    """Folds the waveform into [B, 1, T/p, p] and runs 2-D convs along time only."""

    def __init__(self, period: int, channels: Sequence[int] = (32, 128, 512, 1024, 1024), slope: float = 0.1):
        super().__init__()
        self.period, self.slope = period, slope
        chans = [1, *channels]
        n = len(channels)
        # All but the last conv downsample time by 3; the last keeps resolution.
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(chans[i], chans[i + 1], (5, 1), (3 if i < n - 1 else 1, 1), padding=(2, 0)))
            for i in range(n))
        self.post = weight_norm(nn.Conv2d(chans[-1], 1, (3, 1), padding=(1, 0)))

    def forward(self, wav: torch.Tensor) -> FeatureMaps:
        b, c, t = wav.shape
        pad = -t % self.period
        if pad:
            wav = F.pad(wav, (0, pad), mode="reflect" if pad < t else "constant")
        x = wav.view(b, c, -1, self.period)
        return conv_features(self.convs, self.post, x, self.slope)


def conv_features(convs: nn.ModuleList, post: nn.Module, x: torch.Tensor, slope: float) -> FeatureMaps:
    """Every conv's leaky-ReLU output, then the logits of `post` last."""
    feats = []
    for conv in convs:
        x = F.leaky_relu(conv(x), slope)
        feats.append(x)
    feats.append(post(x))
    return feats


class MultiPeriodDiscriminator(nn.Module):
    def __init__(self, periods: Sequence[int] = (2, 3, 5, 7, 11),
                 channels: Sequence[int] = (32, 128, 512, 1024, 1024)):
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, channels) for p in periods)

    def forward(self, wav: torch.Tensor) -> list[FeatureMaps]:
        return [d(wav) for d in self.discriminators]


class STFTDiscriminator(nn.Module):
    """2-D convs over the complex STFT (real and imaginary parts as two channels, [B,2,frames,freqs]);
    strided along frequency, dilated along time."""

    def __init__(self, n_fft: int, hop_length: int, channels: int = 32,
                 dilations: Sequence[int] = (1, 2, 4), slope: float = 0.1):
        super().__init__()
        self.n_fft, self.hop_length, self.slope = n_fft, hop_length, slope
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        convs = [weight_norm(nn.Conv2d(2, channels, (3, 9), padding=(1, 4)))]
        for d in dilations:
            convs.append(weight_norm(nn.Conv2d(channels, channels, (3, 9), (1, 2), padding=(d, 4), dilation=(d, 1))))
        convs.append(weight_norm(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1))))
        self.convs = nn.ModuleList(convs)
        self.post = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def forward(self, wav: torch.Tensor) -> FeatureMaps:
        with torch.autocast(wav.device.type, enabled=False):  # STFT in fp32 under mixed precision
            spec = torch.stft(wav.squeeze(1).float(), self.n_fft, self.hop_length, window=self.window,
                              normalized=True, return_complex=True)
        x = torch.view_as_real(spec).permute(0, 3, 2, 1)  # [B, 2, frames, freqs]
        return conv_features(self.convs, self.post, x, self.slope)


class MultiResolutionSTFTDiscriminator(nn.Module):
    def __init__(self, resolutions: Sequence[Sequence[int]] = ((2048, 512), (1024, 256), (512, 128)),
                 channels: int = 32):
        super().__init__()
        self.discriminators = nn.ModuleList(STFTDiscriminator(int(r[0]), int(r[1]), channels) for r in resolutions)

    def forward(self, wav: torch.Tensor) -> list[FeatureMaps]:
        return [d(wav) for d in self.discriminators]


class Discriminator(nn.Module):
    """Both families together; an empty `periods` or `stft_resolutions` turns one off."""

    def __init__(self, periods: Sequence[int] = (2, 3, 5, 7, 11),
                 period_channels: Sequence[int] = (32, 128, 512, 1024, 1024),
                 stft_resolutions: Sequence[Sequence[int]] = ((2048, 512), (1024, 256), (512, 128)),
                 stft_channels: int = 32):
        super().__init__()
        if not periods and not stft_resolutions:
            raise ValueError("Discriminator: both `periods` and `stft_resolutions` are empty")
        self.mpd = MultiPeriodDiscriminator(periods, period_channels) if periods else None
        self.mrsd = MultiResolutionSTFTDiscriminator(stft_resolutions, stft_channels) if stft_resolutions else None

    def forward(self, wav: torch.Tensor) -> list[FeatureMaps]:
        out: list[FeatureMaps] = []
        for family in (self.mpd, self.mrsd):
            if family is not None:
                out += family(wav)
        return out
