"""UTMOS22 "strong learner" (Saeki et al. 2022), the naturalness MOS predictor TTS papers report
(F5-TTS among them), from a local checkpoint: the plain state dict that tarepan/SpeechMOS publishes
(`utmos22_strong_step7459_v1.pt`, converted from the official UTMOS22 checkpoint). It cannot be
downloaded here: pass its path (`--utmos PATH` or $VOXLAB_UTMOS).

Model: a wav2vec 2.0 base encoder (transformers' `Wav2Vec2Model`, fed raw 16 kHz audio), its frames
concatenated with the fixed data-domain and judge embeddings, a BLSTM and a two-layer projection;
the frame scores' mean x 2 + 3 is the utterance MOS. Sizes are read from the checkpoint, so a small
random checkpoint of the same format loads too (tests).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from eval.errors import MissingWeightsError

ENV = "VOXLAB_UTMOS"
HOW = ("Copy the UTMOS22 strong checkpoint (utmos22_strong_step7459_v1.pt, a state dict with wav2vec2.*, "
       "blstm.*, projection.*, domain_emb and judge_emb) to this machine and pass --utmos PATH "
       f"(or set {ENV}).")
HEAD_DIM = 64  # wav2vec 2.0 base: 768 wide, 12 heads

# checkpoint (fairseq-style) name -> transformers Wav2Vec2Model name, for the SSL encoder's weights
_RENAMES = [
    (r"^feature_extractor\.conv_layers\.(\d+)\.0\.", r"feature_extractor.conv_layers.\1.conv."),
    (r"^feature_extractor\.conv_layers\.0\.2\.", "feature_extractor.conv_layers.0.layer_norm."),
    (r"^layer_norm\.", "feature_projection.layer_norm."),
    (r"^post_extract_proj\.", "feature_projection.projection."),
    (r"^encoder\.pos_conv\.0\.weight_g$", "encoder.pos_conv_embed.conv.parametrizations.weight.original0"),
    (r"^encoder\.pos_conv\.0\.weight_v$", "encoder.pos_conv_embed.conv.parametrizations.weight.original1"),
    (r"^encoder\.pos_conv\.0\.bias$", "encoder.pos_conv_embed.conv.bias"),
    (r"^encoder\.layers\.(\d+)\.self_attn\.", r"encoder.layers.\1.attention."),
    (r"^encoder\.layers\.(\d+)\.self_attn_layer_norm\.", r"encoder.layers.\1.layer_norm."),
    (r"^encoder\.layers\.(\d+)\.fc1\.", r"encoder.layers.\1.feed_forward.intermediate_dense."),
    (r"^encoder\.layers\.(\d+)\.fc2\.", r"encoder.layers.\1.feed_forward.output_dense."),
    (r"^mask_emb$", "masked_spec_embed"),
]


def resolve_utmos(path: str | None) -> Path:
    path = path or os.environ.get(ENV)
    if not path:
        raise MissingWeightsError(f"--mos utmos needs a local UTMOS22 strong checkpoint and none was given. {HOW}")
    p = Path(path).expanduser()
    if not p.is_file():
        raise MissingWeightsError(f"UTMOS checkpoint not found: {p}. {HOW}")
    return p


def _ssl_key(key: str) -> str:
    for pattern, repl in _RENAMES:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    return key


class UTMOS22Strong(nn.Module):
    """wave [B, T] at 16 kHz -> MOS [B]."""

    def __init__(self, state: dict[str, torch.Tensor]):
        super().__init__()
        from transformers import Wav2Vec2Config, Wav2Vec2Model

        convs = sorted(int(m.group(1)) for k in state
                       if (m := re.match(r"wav2vec2\.feature_extractor\.conv_layers\.(\d+)\.0\.weight$", k)))
        layers = {int(m.group(1)) for k in state if (m := re.match(r"wav2vec2\.encoder\.layers\.(\d+)\.", k))}
        hidden, _ = state["wav2vec2.post_extract_proj.weight"].shape
        pos = state["wav2vec2.encoder.pos_conv.0.weight_v"]
        config = Wav2Vec2Config(
            hidden_size=hidden, num_hidden_layers=len(layers), num_attention_heads=max(1, hidden // HEAD_DIM),
            intermediate_size=state["wav2vec2.encoder.layers.0.fc1.weight"].shape[0],
            conv_dim=[state[f"wav2vec2.feature_extractor.conv_layers.{i}.0.weight"].shape[0] for i in convs],
            conv_kernel=[state[f"wav2vec2.feature_extractor.conv_layers.{i}.0.weight"].shape[2] for i in convs],
            conv_stride=[5] + [2] * (len(convs) - 1), conv_bias=False, feat_extract_norm="group",
            do_stable_layer_norm=False, num_conv_pos_embeddings=pos.shape[2],
            num_conv_pos_embedding_groups=hidden // pos.shape[1])
        self.wav2vec2 = Wav2Vec2Model(config)
        self.domain_emb = nn.Parameter(torch.empty_like(state["domain_emb"]), requires_grad=False)
        self.judge_emb = nn.Parameter(torch.empty_like(state["judge_emb"]), requires_grad=False)
        rnn_in, rnn_hidden = state["blstm.weight_ih_l0"].shape[1], state["blstm.weight_hh_l0"].shape[1]
        self.blstm = nn.LSTM(rnn_in, rnn_hidden, batch_first=True, bidirectional=True)
        proj_hidden = state["projection.0.weight"].shape[0]
        self.projection = nn.Sequential(nn.Linear(2 * rnn_hidden, proj_hidden), nn.ReLU(), nn.Linear(proj_hidden, 1))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        frames = self.wav2vec2(wave).last_hidden_state
        b, t, _ = frames.shape
        feats = torch.cat([frames, self.domain_emb[:, None].expand(b, t, -1), self.judge_emb[:, None].expand(b, t, -1)],
                          dim=2)
        return self.projection(self.blstm(feats)[0]).mean(dim=1).squeeze(1) * 2 + 3


def load_utmos(path: str | Path) -> UTMOS22Strong:
    """Weights-only load; every missing or unexpected key is named."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a pickle with code, a torn file...
        raise MissingWeightsError(f"{path}: not a loadable UTMOS state dict ({str(err).splitlines()[0]})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    needed = ("wav2vec2.post_extract_proj.weight", "wav2vec2.encoder.pos_conv.0.weight_v",
              "wav2vec2.encoder.layers.0.fc1.weight", "domain_emb", "judge_emb", "blstm.weight_ih_l0",
              "projection.0.weight")
    absent = [k for k in needed if not isinstance(state, dict) or k not in state]
    if absent:
        raise MissingWeightsError(f"{path}: not a UTMOS22 strong checkpoint (missing {', '.join(absent)}). {HOW}")
    model = UTMOS22Strong(state)
    renamed = {("wav2vec2." + _ssl_key(k[len("wav2vec2."):]) if k.startswith("wav2vec2.") else k): v
               for k, v in state.items()}
    missing, unexpected = model.load_state_dict(renamed, strict=False)
    if missing or unexpected:
        raise MissingWeightsError(f"{path}: keys do not match a UTMOS22 strong model: missing {missing[:8]}, "
                                  f"unexpected {unexpected[:8]}")
    return model.eval()


class UTMOSPredictor:
    name = "utmos"
    description = "UTMOS22 strong learner"

    def __init__(self, path: str | None, device: str = "cpu"):
        self.path = resolve_utmos(path)
        self.device = device
        self.model = load_utmos(self.path).to(device)

    def info(self) -> dict:
        return {"name": self.name, "model": self.description, "checkpoint": str(self.path),
                "device": str(self.device), "measures": "TTS naturalness (trained on BVCC / VoiceMOS 2022 ratings)"}

    @torch.inference_mode()
    def score(self, wav: np.ndarray) -> dict:
        x = torch.as_tensor(np.asarray(wav, dtype=np.float32).reshape(1, -1), device=self.device)
        return {"mos": float(self.model(x)[0])}
