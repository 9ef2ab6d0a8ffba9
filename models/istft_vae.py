"""A frame-rate AudioVAE: the same interface as models.audiovae.AudioVAE (16 kHz waveform <-> 64-d
latents at 25 Hz), built to learn on a CPU. Chosen by config: `model.decoder: istft`.

Why: the official decoder upsamples with transposed convolutions to the sample rate; at tiny width
almost all of its step time is memory-bound elementwise work at 16 kHz with 8-16 channels, and a
waveform decoder learns pitch and phase slowly from a mel loss. Here no layer runs at the sample
rate: the encoder reads a causal log-magnitude STFT, both halves are ConvNeXt-style blocks at
100 Hz (the STFT hop) and at 25 Hz (the latent rate), and the decoder ends in an inverse-STFT head
that predicts log-magnitude and phase per STFT frame (the Vocos head), made causal.

    encoder: causal |STFT| (n_fft, stft_hop) -> log -> 1x1 conv -> blocks at 100 Hz
             -> strided conv (hop / stft_hop frames -> 1) -> blocks at 25 Hz -> fc_mu / fc_logvar
    decoder: causal conv k3 -> blocks at 25 Hz -> transposed conv (1 -> hop / stft_hop frames,
             no overlap) -> blocks at 100 Hz -> Linear -> log-magnitude, phase -> iSTFT
    block:   causal depthwise conv k7 -> LayerNorm -> Linear x3 -> GELU -> Linear -> layer scale, residual

Causality and lookahead: every conv pads on the left. STFT frame j covers the samples that end at
the end of its hop, [stft_hop * (j+1) - n_fft, stft_hop * (j+1)), in the encoder and in the
decoder's overlap-add, so output sample s is the sum of frames floor(s / stft_hop) .. + 3 (for n_fft
= 4 x hop): the decoder holds back `lookahead_samples` = n_fft - stft_hop samples (30 ms at the
defaults). `decode` of F latent frames returns F x hop samples whose last `lookahead_samples`
fade out (the frames that would complete them do not exist yet); training compares only the
complete part. The streaming decoder returns complete samples only and hands out that tail on
`flush()`, so joined pushes + flush equal the one-shot decode.

The official format cannot hold this model (the official `AudioVAE` class has no such decoder):
export_audiovae writes our own `audiovae_config.json` (`"decoder": "istft"`) beside the weights,
which models.load_audiovae reads; an official model folder export refuses it in one line.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.audiovae import prepare_waveform

DEFAULTS = dict(dim=256, encoder_fast_blocks=2, encoder_slow_blocks=2, decoder_slow_blocks=3,
                decoder_fast_blocks=3, n_fft=640, stft_hop=160, max_log_magnitude=7.0)


class CausalDepthwiseConv(nn.Conv1d):
    def __init__(self, dim: int, kernel: int = 7):
        super().__init__(dim, dim, kernel, groups=dim)
        self.left = kernel - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.left, 0)))


class ConvNeXtBlock(nn.Module):
    """x + scale * MLP(LayerNorm(causal depthwise conv(x))) over [B, C, T]."""

    def __init__(self, dim: int, expansion: int = 3, layer_scale: float = 0.1):
        super().__init__()
        self.dwconv = CausalDepthwiseConv(dim)
        self.norm = nn.LayerNorm(dim)
        self.pw1, self.pw2 = nn.Linear(dim, expansion * dim), nn.Linear(expansion * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def branch(self, conv_out: torch.Tensor) -> torch.Tensor:
        h = self.pw2(F.gelu(self.pw1(self.norm(conv_out.transpose(1, 2)))))
        return (self.gamma * h).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(self.dwconv(x))


class STFTEncoder(nn.Module):
    def __init__(self, latent_dim: int, dim: int, ratio: int, n_fft: int, stft_hop: int,
                 fast_blocks: int, slow_blocks: int):
        super().__init__()
        self.n_fft, self.stft_hop = n_fft, stft_hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.proj = nn.Conv1d(n_fft // 2 + 1, dim, 1)
        self.fast = nn.Sequential(*[ConvNeXtBlock(dim) for _ in range(fast_blocks)])
        self.down = nn.Conv1d(dim, dim, ratio, stride=ratio)  # latent k <- STFT frames ratio*k .. +ratio-1
        self.slow = nn.Sequential(*[ConvNeXtBlock(dim) for _ in range(slow_blocks)])
        self.norm = nn.LayerNorm(dim)
        self.fc_mu, self.fc_logvar = nn.Conv1d(dim, latent_dim, 1), nn.Conv1d(dim, latent_dim, 1)

    def log_magnitude(self, wav: torch.Tensor) -> torch.Tensor:
        """[B, 1, T] -> [B, n_fft/2+1, T / stft_hop]; frame j ends at sample stft_hop * (j+1)."""
        x = F.pad(wav[:, 0].float(), (self.n_fft - self.stft_hop, 0))
        spec = torch.stft(x, self.n_fft, self.stft_hop, window=self.window, center=False, return_complex=True)
        return torch.log(spec.real.square() + spec.imag.square() + 1e-10) * 0.5

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.slow(self.down(self.fast(self.proj(self.log_magnitude(wav).to(self.proj.weight.dtype)))))
        h = self.norm(h.transpose(1, 2)).transpose(1, 2)
        return self.fc_mu(h), self.fc_logvar(h)


class ISTFTDecoder(nn.Module):
    def __init__(self, latent_dim: int, dim: int, ratio: int, n_fft: int, stft_hop: int,
                 slow_blocks: int, fast_blocks: int, max_log_magnitude: float):
        super().__init__()
        self.n_fft, self.stft_hop, self.max_log_magnitude = n_fft, stft_hop, max_log_magnitude
        self.inp = nn.Conv1d(latent_dim, dim, 3)  # causal: padded on the left by 2
        self.slow = nn.Sequential(*[ConvNeXtBlock(dim) for _ in range(slow_blocks)])
        self.up = nn.ConvTranspose1d(dim, dim, ratio, stride=ratio)  # kernel = stride: no overlap, no lookahead
        self.fast = nn.Sequential(*[ConvNeXtBlock(dim) for _ in range(fast_blocks)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_fft + 2)
        window = torch.hann_window(n_fft, device="cpu")  # a real tensor even when built on the meta device (sizing)
        self.register_buffer("window", window, persistent=False)
        # overlap-add gain of window^2 at full overlap (constant for a Hann window with hop | n_fft / 2)
        self.ola_gain = float(window.square().reshape(-1, stft_hop).sum(0).mean())

    def frames(self, h: torch.Tensor) -> torch.Tensor:
        """Features at the STFT rate [B, dim, J] -> windowed time-domain frames [B, n_fft, J]."""
        out = self.head(self.norm(h.transpose(1, 2))).float()  # [B, J, n_fft + 2]
        log_mag, phase = out.chunk(2, dim=-1)
        mag = torch.exp(log_mag.clamp(max=self.max_log_magnitude))
        spec = torch.complex(mag * torch.cos(phase), mag * torch.sin(phase))
        frames = torch.fft.irfft(spec, n=self.n_fft, dim=-1) * self.window
        return frames.transpose(1, 2) / self.ola_gain

    def overlap_add(self, frames: torch.Tensor) -> torch.Tensor:
        """[B, n_fft, J] -> [B, 1, (J-1) * hop + n_fft]: frame j starts at sample hop * j."""
        j = frames.shape[-1]
        out = F.fold(frames, output_size=(1, (j - 1) * self.stft_hop + self.n_fft),
                     kernel_size=(1, self.n_fft), stride=(1, self.stft_hop))
        return out.view(frames.shape[0], 1, -1)

    def features(self, z: torch.Tensor) -> torch.Tensor:
        return self.fast(self.up(self.slow(self.inp(F.pad(z, (2, 0))))))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        wav = self.overlap_add(self.frames(self.features(z)))
        return wav[..., self.n_fft - self.stft_hop:]  # frame j ends at hop * (j+1): drop the negative times


class ISTFTAudioVAE(nn.Module):
    """encode(wav [B,1,T]) -> mu [B, latent_dim, ceil(T/hop)]; decode(z) -> wav [B,1,frames*hop]."""

    decoder_kind = "istft"

    def __init__(self, latent_dim: int = 64, hop_length: int = 640, sample_rate: int = 16000, dim: int = 256,
                 encoder_fast_blocks: int = 2, encoder_slow_blocks: int = 2, decoder_slow_blocks: int = 3,
                 decoder_fast_blocks: int = 3, n_fft: int = 640, stft_hop: int = 160,
                 max_log_magnitude: float = 7.0):
        super().__init__()
        if hop_length % stft_hop or n_fft % stft_hop or n_fft < stft_hop:
            raise ValueError(f"istft AudioVAE: stft_hop {stft_hop} must divide hop_length {hop_length} and "
                             f"n_fft {n_fft} (n_fft >= stft_hop)")
        ratio = hop_length // stft_hop
        self.latent_dim, self.hop_length, self.chunk_size, self.sample_rate = latent_dim, hop_length, hop_length, sample_rate
        self.out_sample_rate, self.out_hop_length = sample_rate, hop_length  # decodes at its input rate
        self.settings = dict(dim=dim, encoder_fast_blocks=encoder_fast_blocks, encoder_slow_blocks=encoder_slow_blocks,
                             decoder_slow_blocks=decoder_slow_blocks, decoder_fast_blocks=decoder_fast_blocks,
                             n_fft=n_fft, stft_hop=stft_hop, max_log_magnitude=float(max_log_magnitude))
        self.lookahead_samples = n_fft - stft_hop
        self.encoder = STFTEncoder(latent_dim, dim, ratio, n_fft, stft_hop, encoder_fast_blocks, encoder_slow_blocks)
        self.decoder = ISTFTDecoder(latent_dim, dim, ratio, n_fft, stft_hop, decoder_slow_blocks,
                                    decoder_fast_blocks, max_log_magnitude)
        # per-channel statistics of the posterior means over a corpus (set_latent_stats): `encode`
        # returns standardised latents and `decode` takes them, so a backbone models unit-scale
        # latents from unit noise. Identity until set; training and the KL see the raw posterior.
        self.register_buffer("latent_mean", torch.zeros(latent_dim))
        self.register_buffer("latent_std", torch.ones(latent_dim))

    def config(self) -> dict:
        """Our own config (not the official `audio_vae_config`): `decoder` says which class."""
        return dict(decoder=self.decoder_kind, latent_dim=self.latent_dim, hop_length=self.hop_length,
                    sample_rate=self.sample_rate, **self.settings)

    def decode_bytes_per_frame(self) -> int:
        """float32 bytes of the widest decoder activation per latent frame (batch sizing)."""
        ratio = self.hop_length // self.settings["stft_hop"]
        return 4 * ratio * max(3 * self.settings["dim"], 2 * self.settings["n_fft"])

    def preprocess(self, wav: torch.Tensor, sample_rate: int | None = None) -> torch.Tensor:
        return prepare_waveform(wav, sample_rate, self.sample_rate, self.hop_length)

    def encode_posterior(self, wav: torch.Tensor, sample_rate: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(self.preprocess(wav, sample_rate))

    def encode(self, wav: torch.Tensor, sample_rate: int | None = None) -> torch.Tensor:
        """The posterior mean, standardised by the stored latent statistics."""
        return self.standardise(self.encode_posterior(wav, sample_rate)[0])

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Standardised latents (what `encode` returns) -> waveform."""
        return self.decoder(self.unstandardise(z))

    def standardise(self, mu: torch.Tensor) -> torch.Tensor:
        return (mu - self.latent_mean[:, None].to(mu.dtype)) / self.latent_std[:, None].to(mu.dtype)

    def unstandardise(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.latent_std[:, None].to(z.dtype) + self.latent_mean[:, None].to(z.dtype)

    @torch.no_grad()
    def set_latent_stats(self, wavs) -> dict[str, float]:
        """Store the per-channel mean and std of the posterior means over `wavs` (waveforms
        [1, 1, T] at the model's rate); returns the overall figures, for the record."""
        mus = torch.cat([self.encode_posterior(w)[0][0].t() for w in wavs])  # [frames, D]
        self.latent_mean.copy_(mus.mean(0))
        self.latent_std.copy_(mus.std(0).clamp(min=1e-3))
        diffs = torch.diff(self.standardise(mus.t()[None])[0], dim=-1)
        return {"frames": mus.shape[0], "raw_std": float(mus.std()), "raw_abs_mean": float(mus.mean(0).abs().mean()),
                "standardised_step_std": float(diffs.std())}

    def stream_decoder(self) -> "ISTFTStreamingDecoder":
        return ISTFTStreamingDecoder(self.decoder, self.unstandardise)

    def forward(self, wav: torch.Tensor, sample: bool | None = None) -> dict[str, torch.Tensor]:
        mu, logvar = self.encode_posterior(wav)
        sample = self.training if sample is None else sample
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
        return {"audio": self.decoder(z), "mu": mu, "logvar": logvar, "z": z}


class ISTFTStreamingDecoder:
    """`push(z [B, D, n])` -> the samples that are complete so far; `flush()` -> the held-back tail.

    Each causal conv keeps the inputs its next call needs (kernel - 1 frames); the upsampler and
    the head work frame by frame; the overlap-add keeps the partial sums of the last
    n_fft - stft_hop samples. So the joined pushes and the flush equal `decode` of the joined
    latents (up to float rounding), and the first push is `lookahead_samples` shorter than
    n x hop."""

    def __init__(self, decoder: ISTFTDecoder, unstandardise=lambda z: z):
        self.decoder, self.unstandardise = decoder, unstandardise
        self.context: dict[int, torch.Tensor] = {}
        self.tail: torch.Tensor | None = None  # partial overlap-add sums of the samples not yet out
        self.started = False

    def _conv(self, conv: nn.Conv1d, x: torch.Tensor, left: int) -> torch.Tensor:
        prev = self.context.get(id(conv))
        if prev is None:
            prev = x.new_zeros(*x.shape[:-1], left)
        x = torch.cat([prev, x], dim=-1)
        self.context[id(conv)] = x[..., x.shape[-1] - left:]
        return F.conv1d(x, conv.weight, conv.bias, groups=conv.groups)

    def _blocks(self, blocks: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        for block in blocks:
            x = x + block.branch(self._conv(block.dwconv, x, block.dwconv.left))
        return x

    def push(self, z: torch.Tensor) -> torch.Tensor:
        d = self.decoder
        z = self.unstandardise(z)
        h = self._blocks(d.fast, d.up(self._blocks(d.slow, self._conv(d.inp, z, 2))))
        wav = d.overlap_add(d.frames(h))  # covers [start - (n_fft - hop), end)
        keep = d.n_fft - d.stft_hop
        if self.tail is not None:
            wav[..., :keep] += self.tail
        self.tail = wav[..., wav.shape[-1] - keep:].clone()
        out = wav[..., :wav.shape[-1] - keep]
        if not self.started:  # the first frames' samples before time 0
            self.started = True
            out = out[..., keep:]
        return out

    def flush(self) -> torch.Tensor:
        """The last n_fft - stft_hop samples (faded: no later frame completes them), once."""
        tail, self.tail = self.tail, None
        if tail is None:
            return torch.zeros(1, 1, 0)
        return tail
