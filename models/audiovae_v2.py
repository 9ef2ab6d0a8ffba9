"""The AudioVAE V2 of VoxCPM2: 16 kHz waveform -> latents (as v1), latents -> a waveform at a higher
output rate (48 kHz at release size), the decoder conditioned on the output sample rate.

Read from the official `voxcpm/modules/audiovae/audio_vae_v2.py` (voxcpm 2.0.3); parameter names
are the official ones, so its `audiovae.pth` / `.safetensors` loads with strict keys:

- encoder: v1's, except that each strided conv pads `stride` samples on the left (v1:
  2*ceil(stride/2); the two differ for odd strides);
- decoder.model: v1's layout; `decoder_rates` need not multiply to the encoder hop: one latent
  frame decodes to prod(decoder_rates) samples (`out_hop_length`);
- with `sr_bin_boundaries`: a buffer `decoder.sr_bin_boundaries` and, before each decoder block,
  `decoder.sr_cond_model.<block index>`: the output rate's bucket (torch.bucketize over the
  boundaries) picks a per-channel scale and bias (`scale_bias`, `scale_bias_init`), an added vector
  (`add`), or a vector concatenated to the channels (`concat`); then, with `cond_out_layer`,
  Snake + 1x1 conv back to the block's width. Without boundaries the decoder is unconditioned.
  Every condition is constant over time, so streaming needs no extra state for it.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from torch import nn

from models.audiovae import AudioVAE, CausalConv1d, Decoder, DecoderBlock, Encoder, Snake1d, StreamingDecoder

# The official AudioVAEConfigV2 defaults: the VoxCPM2 release size (16 kHz in, 48 kHz out).
RELEASE_CONFIG = dict(encoder_dim=128, encoder_rates=[2, 5, 8, 8], latent_dim=64, decoder_dim=2048,
                      decoder_rates=[8, 6, 5, 2, 2, 2], depthwise=True, sample_rate=16000, out_sample_rate=48000,
                      use_noise_block=False, sr_bin_boundaries=[20000, 30000, 40000], cond_type="scale_bias",
                      cond_dim=128, cond_out_layer=False)
# config keys only V2 has: a VAE config holding one of them builds this class (models.weights)
V2_KEYS = ("out_sample_rate", "sr_bin_boundaries", "cond_type", "cond_dim", "cond_out_layer")
COND_TYPES = ("scale_bias", "scale_bias_init", "add", "concat")


class SampleRateCondition(nn.Module):
    """Conditions a decoder block's input [B, C, T] on the output rate's bucket [B] (or [1])."""

    def __init__(self, dim: int, buckets: int, cond_type: str, cond_dim: int, out_layer: bool):
        super().__init__()
        self.cond_type = cond_type
        if cond_type.startswith("scale_bias"):
            self.scale_embed, self.bias_embed = nn.Embedding(buckets, dim), nn.Embedding(buckets, dim)
            if cond_type == "scale_bias":  # starts as the identity, as the official init
                nn.init.ones_(self.scale_embed.weight)
                nn.init.zeros_(self.bias_embed.weight)
            else:
                nn.init.normal_(self.scale_embed.weight, mean=1.0)
        else:  # add: a vector of the block's width; concat: cond_dim more channels
            self.cond_embed = nn.Embedding(buckets, dim if cond_type == "add" else cond_dim)
        width = dim + cond_dim if cond_type == "concat" else dim
        self.out_layer = nn.Sequential(Snake1d(width), CausalConv1d(width, dim, 1)) if out_layer else nn.Identity()

    def forward(self, x: torch.Tensor, bucket: torch.Tensor) -> torch.Tensor:
        if self.cond_type.startswith("scale_bias"):
            x = x * self.scale_embed(bucket)[..., None] + self.bias_embed(bucket)[..., None]
        elif self.cond_type == "add":
            x = x + self.cond_embed(bucket)[..., None]
        else:
            e = self.cond_embed(bucket)[..., None]
            x = torch.cat([x, e.expand(x.shape[0], -1, x.shape[-1])], dim=1)
        return self.out_layer(x)


class DecoderV2(Decoder):
    """v1's decoder with, when `boundaries` are given, a condition layer before each block."""

    def __init__(self, latent_dim: int, channels: int, rates: Sequence[int], depthwise: bool, noise: bool,
                 boundaries: Sequence[int] | None, cond_type: str, cond_dim: int, cond_out_layer: bool):
        super().__init__(latent_dim, channels, rates, depthwise, noise)
        if boundaries is None:
            self.sr_bin_boundaries = None
            return
        self.register_buffer("sr_bin_boundaries", torch.tensor(list(boundaries), dtype=torch.int32))
        # aligned with self.model (None where no block), so the keys carry the block's index
        self.sr_cond_model = nn.ModuleList([
            SampleRateCondition(m.in_dim, len(boundaries) + 1, cond_type, cond_dim, cond_out_layer)
            if isinstance(m, DecoderBlock) else None for m in self.model])

    def conditions(self) -> list[nn.Module | None]:
        return list(self.sr_cond_model) if self.sr_bin_boundaries is not None else [None] * len(self.model)

    def bucket(self, rate: int | torch.Tensor, device: torch.device) -> torch.Tensor | None:
        """The condition's embedding row per item: the rate's bucket over the boundaries."""
        if self.sr_bin_boundaries is None:
            return None
        rate = torch.as_tensor(rate, dtype=torch.int32, device=device).reshape(-1)
        return torch.bucketize(rate, self.sr_bin_boundaries)

    def forward(self, z: torch.Tensor, bucket: torch.Tensor | None = None) -> torch.Tensor:
        x = z
        for layer, cond in zip(self.model, self.conditions()):
            if cond is not None:
                x = cond(x, bucket)
            x = layer(x)
        return x


class AudioVAEV2(AudioVAE):
    """encode(wav [B,1,T] at `sample_rate`) -> mu [B, latent_dim, ceil(T/hop)];
    decode(z, out_sample_rate=None) -> wav [B, 1, frames * out_hop_length], conditioned on that
    rate (default: the config's `out_sample_rate`). Constructor arguments are the official
    `AudioVAEConfigV2` fields; the rest of the interface is AudioVAE's (it reuses its encoder,
    training forward and memory estimate; only the build, decode and streaming differ)."""

    decoder_kind = "waveform_v2"

    def __init__(self, encoder_dim: int = 128, encoder_rates: Sequence[int] = (2, 5, 8, 8),
                 latent_dim: int | None = 64, decoder_dim: int = 2048,
                 decoder_rates: Sequence[int] = (8, 6, 5, 2, 2, 2), depthwise: bool = True,
                 sample_rate: int = 16000, out_sample_rate: int = 48000, use_noise_block: bool = False,
                 sr_bin_boundaries: Sequence[int] | None = (20000, 30000, 40000), cond_type: str = "scale_bias",
                 cond_dim: int = 128, cond_out_layer: bool = False, decoder: str = "waveform_v2"):
        nn.Module.__init__(self)  # AudioVAE.__init__ would require equal encoder / decoder hops
        if decoder != "waveform_v2":
            raise ValueError(f"AudioVAEV2 builds the V2 waveform decoder, not decoder={decoder!r}")
        if cond_type not in COND_TYPES:
            raise ValueError(f"AudioVAEV2: cond_type {cond_type!r} unknown; choose one of {', '.join(COND_TYPES)}")
        if cond_type == "concat" and not cond_out_layer:
            raise ValueError("AudioVAEV2: cond_type 'concat' needs cond_out_layer=True (back to the block's width)")
        if sr_bin_boundaries is not None and list(sr_bin_boundaries) != sorted(sr_bin_boundaries):
            raise ValueError(f"AudioVAEV2: sr_bin_boundaries {list(sr_bin_boundaries)} must be ascending")
        if decoder_dim < 2 ** len(decoder_rates):
            raise ValueError(f"AudioVAEV2: decoder_dim {decoder_dim} must be at least 2**{len(decoder_rates)}")
        encoder_rates, decoder_rates = [int(r) for r in encoder_rates], [int(r) for r in decoder_rates]
        if latent_dim is None:  # official fallback: the encoder's last width
            latent_dim = encoder_dim * 2 ** len(encoder_rates)
        self.encoder_dim, self.encoder_rates, self.latent_dim = encoder_dim, encoder_rates, latent_dim
        self.decoder_dim, self.decoder_rates, self.depthwise = decoder_dim, decoder_rates, depthwise
        self.sample_rate, self.out_sample_rate, self.use_noise_block = sample_rate, out_sample_rate, use_noise_block
        self.sr_bin_boundaries = None if sr_bin_boundaries is None else [int(b) for b in sr_bin_boundaries]
        self.cond_type, self.cond_dim, self.cond_out_layer = cond_type, cond_dim, cond_out_layer
        self.hop_length = self.chunk_size = math.prod(encoder_rates)
        self.out_hop_length = math.prod(decoder_rates)  # samples per latent frame at the output rate
        self.encoder = Encoder(encoder_dim, latent_dim, encoder_rates, depthwise, pad_stride=True)
        self.decoder = DecoderV2(latent_dim, decoder_dim, decoder_rates, depthwise, use_noise_block,
                                 self.sr_bin_boundaries, cond_type, cond_dim, cond_out_layer)

    def config(self) -> dict:
        """The official `audio_vae_config` (AudioVAEConfigV2) of this model."""
        return dict(super().config(), out_sample_rate=self.out_sample_rate, sr_bin_boundaries=self.sr_bin_boundaries,
                    cond_type=self.cond_type, cond_dim=self.cond_dim, cond_out_layer=self.cond_out_layer)

    def decode(self, z: torch.Tensor, out_sample_rate: int | torch.Tensor | None = None) -> torch.Tensor:
        """z [B, D, frames] -> [B, 1, frames * out_hop_length]; the rate: an int or one per item."""
        rate = self.out_sample_rate if out_sample_rate is None else out_sample_rate
        return self.decoder(z, self.decoder.bucket(rate, z.device))

    def stream_decoder(self, out_sample_rate: int | None = None) -> "StreamingDecoderV2":
        return StreamingDecoderV2(self.decoder, self.out_sample_rate if out_sample_rate is None else out_sample_rate)


class StreamingDecoderV2(StreamingDecoder):
    """models.audiovae.StreamingDecoder with the rate condition before each block (pointwise in
    time, so it carries no state): joined pushes equal the one-shot `decode`."""

    def __init__(self, decoder: DecoderV2, out_sample_rate: int):
        super().__init__(decoder)
        self.rate = out_sample_rate

    def push(self, z: torch.Tensor) -> torch.Tensor:
        bucket = self.decoder.bucket(self.rate, z.device)
        x = z
        for layer, cond in zip(self.decoder.model, self.decoder.conditions()):
            if cond is not None:
                x = cond(x, bucket)
            x = self._run(layer, x)
        return x


def v2_config_from_state(state: Mapping[str, torch.Tensor], v1_config: dict) -> dict | None:
    """The V2 config of an official V2 state dict whose v1 fields (`v1_config`, read from the
    shapes by models.weights.infer_audiovae_config) are known, or None when it has no rate
    condition (then nothing in the weights tells V2 from v1). The output rate follows from the
    hops; cond_dim, which only `concat` stores, is otherwise the official default."""
    if "decoder.sr_bin_boundaries" not in state:
        return None
    boundaries = [int(b) for b in state["decoder.sr_bin_boundaries"].tolist()]
    block = min(int(k.split(".")[2]) for k in state if k.startswith("decoder.sr_cond_model."))
    prefix = f"decoder.sr_cond_model.{block}."
    out_layer = f"{prefix}out_layer.1.weight_v" in state
    in_dim = int(state[f"decoder.model.{block}.block.0.alpha"].shape[1])
    cond_type, cond_dim = "scale_bias", RELEASE_CONFIG["cond_dim"]
    if f"{prefix}cond_embed.weight" in state:
        width = int(state[f"{prefix}out_layer.1.weight_v"].shape[1]) if out_layer else in_dim
        cond_type = "add" if width == in_dim else "concat"
        cond_dim = int(state[f"{prefix}cond_embed.weight"].shape[1]) if cond_type == "concat" else cond_dim
    rate = v1_config["sample_rate"] * math.prod(v1_config["decoder_rates"]) // math.prod(v1_config["encoder_rates"])
    return dict(v1_config, out_sample_rate=rate, sr_bin_boundaries=boundaries, cond_type=cond_type,
                cond_dim=cond_dim, cond_out_layer=out_layer)
