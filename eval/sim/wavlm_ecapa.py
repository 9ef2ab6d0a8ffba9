"""The protocol's SIM model: WavLM-large hidden states -> ECAPA-TDNN, `wavlm_large_finetune.pth`.

Seed-TTS-Eval uses UniSpeech's speaker-verification model: an ECAPA-TDNN (512 channels, Res2 scale
8, SE bottleneck 128, attentive statistics pooling with 128 channels, 256-d output) over the softmax-
weighted sum of all WavLM hidden states (instance-normalised), with the waveform layer-normalised
first. Its checkpoint (`{"model": state_dict}`) holds the head and, under `feature_extract.model.`,
the fine-tuned WavLM in the original (s3prl/unilm) parameter names.

Here WavLM is transformers' WavLMModel, built from a local folder (config.json; e.g. a copy of
microsoft/wavlm-large), and the checkpoint's fine-tuned WavLM weights are mapped onto it; the head
is our own module with UniSpeech's parameter names. Both load with strict key checks (the original
loads with strict=False, which would hide a wrong file). Sizes are read from the checkpoint.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from eval.errors import MissingWeightsError
from eval.sim.wespeaker_sim import strict_load

PREFIX = "feature_extract.model."
# original-WavLM parameters that exist only for pre-training; never used for features
TRAINING_ONLY = ("final_proj", "label_embs_concat", "project_q", "quantizer")
HOW = ("Pass --wavlm DIR (a transformers WavLM folder with config.json, e.g. microsoft/wavlm-large; "
       "or set VOXLAB_WAVLM) and --ecapa FILE (UniSpeech's wavlm_large_finetune.pth, as used by "
       "Seed-TTS-Eval; or set VOXLAB_ECAPA).")

# original (unilm/s3prl) WavLM parameter names -> transformers WavLMModel names
_RULES = [
    (r"^feature_extractor\.conv_layers\.(\d+)\.0\.", r"feature_extractor.conv_layers.\1.conv."),
    (r"^feature_extractor\.conv_layers\.(\d+)\.2\.1\.", r"feature_extractor.conv_layers.\1.layer_norm."),
    (r"^feature_extractor\.conv_layers\.(\d+)\.2\.", r"feature_extractor.conv_layers.\1.layer_norm."),
    (r"^layer_norm\.", "feature_projection.layer_norm."),
    (r"^post_extract_proj\.", "feature_projection.projection."),
    (r"^mask_emb$", "masked_spec_embed"),
    (r"^encoder\.pos_conv\.0\.", "encoder.pos_conv_embed.conv."),
    (r"\.self_attn\.grep_linear\.", ".attention.gru_rel_pos_linear."),
    (r"\.self_attn\.grep_a$", ".attention.gru_rel_pos_const"),
    (r"\.self_attn\.relative_attention_bias\.", ".attention.rel_attn_embed."),
    (r"\.self_attn\.", ".attention."),
    (r"\.self_attn_layer_norm\.", ".layer_norm."),
    (r"\.fc1\.", ".feed_forward.intermediate_dense."),
    (r"\.fc2\.", ".feed_forward.output_dense."),
]


def map_wavlm_key(name: str, hf_keys: set[str]) -> str:
    for pattern, repl in _RULES:
        name = re.sub(pattern, repl, name)
    # weight norm: old-style weight_g/weight_v, or transformers' parametrizations (newer torch)
    for old, new in (("weight_g", "parametrizations.weight.original0"),
                     ("weight_v", "parametrizations.weight.original1")):
        if name.endswith(old) and name not in hf_keys:
            name = name[: -len(old)] + new
    return name


# ---------------------------------------------------------------- ECAPA-TDNN head (UniSpeech names)


class Conv1dReluBn(nn.Module):
    def __init__(self, cin: int, cout: int, kernel_size: int = 1, padding: int = 0, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel_size, padding=padding, dilation=dilation)
        self.bn = nn.BatchNorm1d(cout)

    def forward(self, x):
        return self.bn(F.relu(self.conv(x)))


class Res2Conv1dReluBn(nn.Module):
    """Res2Net split: each channel group after the first adds the previous group's output."""

    def __init__(self, channels: int, kernel_size: int, padding: int, dilation: int, scale: int):
        super().__init__()
        if channels % scale:
            raise ValueError(f"channels {channels} not divisible by Res2 scale {scale}")
        self.width = channels // scale
        self.nums = scale if scale == 1 else scale - 1
        self.convs = nn.ModuleList(nn.Conv1d(self.width, self.width, kernel_size, padding=padding,
                                             dilation=dilation) for _ in range(self.nums))
        self.bns = nn.ModuleList(nn.BatchNorm1d(self.width) for _ in range(self.nums))

    def forward(self, x):
        parts = torch.split(x, self.width, dim=1)
        out, sp = [], None
        for i in range(self.nums):
            sp = parts[i] if i == 0 else sp + parts[i]
            sp = self.bns[i](F.relu(self.convs[i](sp)))
            out.append(sp)
        if self.nums != len(parts):
            out.append(parts[self.nums])
        return torch.cat(out, dim=1)


class SE_Connect(nn.Module):  # noqa: N801 - UniSpeech's name, kept for the checkpoint keys
    def __init__(self, channels: int, bottleneck: int):
        super().__init__()
        self.linear1 = nn.Linear(channels, bottleneck)
        self.linear2 = nn.Linear(bottleneck, channels)

    def forward(self, x):
        gate = torch.sigmoid(self.linear2(F.relu(self.linear1(x.mean(dim=2)))))
        return x * gate.unsqueeze(2)


class SE_Res2Block(nn.Module):  # noqa: N801
    def __init__(self, channels: int, dilation: int, scale: int, se_bottleneck: int):
        super().__init__()
        self.Conv1dReluBn1 = Conv1dReluBn(channels, channels)
        self.Res2Conv1dReluBn = Res2Conv1dReluBn(channels, 3, dilation, dilation, scale)
        self.Conv1dReluBn2 = Conv1dReluBn(channels, channels)
        self.SE_Connect = SE_Connect(channels, se_bottleneck)

    def forward(self, x):
        out = self.Conv1dReluBn2(self.Res2Conv1dReluBn(self.Conv1dReluBn1(x)))
        return self.SE_Connect(out) + x


class AttentiveStatsPool(nn.Module):
    def __init__(self, dim: int, attention_channels: int, global_context_att: bool = False):
        super().__init__()
        self.global_context_att = global_context_att
        self.linear1 = nn.Conv1d(dim * 3 if global_context_att else dim, attention_channels, 1)
        self.linear2 = nn.Conv1d(attention_channels, dim, 1)

    def forward(self, x):
        x_in = x
        if self.global_context_att:
            mean = x.mean(dim=-1, keepdim=True).expand_as(x)
            std = torch.sqrt(x.var(dim=-1, keepdim=True) + 1e-10).expand_as(x)
            x_in = torch.cat([x, mean, std], dim=1)
        alpha = torch.softmax(self.linear2(torch.tanh(self.linear1(x_in))), dim=2)
        mean = (alpha * x).sum(dim=2)
        std = torch.sqrt(((alpha * x * x).sum(dim=2) - mean * mean).clamp(min=1e-9))
        return torch.cat([mean, std], dim=1)


class EcapaHead(nn.Module):
    """Layer-weighted SSL features [L, B, T, C] -> speaker embedding [B, emb_dim]."""

    def __init__(self, n_feats: int, feat_dim: int, channels: int = 512, last_channels: int = 1536,
                 emb_dim: int = 256, scale: int = 8, se_bottleneck: int = 128,
                 attention_channels: int = 128, global_context_att: bool = False):
        super().__init__()
        self.feature_weight = nn.Parameter(torch.zeros(n_feats))
        self.instance_norm = nn.InstanceNorm1d(feat_dim)
        self.layer1 = Conv1dReluBn(feat_dim, channels, kernel_size=5, padding=2)
        self.layer2 = SE_Res2Block(channels, 2, scale, se_bottleneck)
        self.layer3 = SE_Res2Block(channels, 3, scale, se_bottleneck)
        self.layer4 = SE_Res2Block(channels, 4, scale, se_bottleneck)
        self.conv = nn.Conv1d(channels * 3, last_channels, kernel_size=1)
        self.pooling = AttentiveStatsPool(last_channels, attention_channels, global_context_att)
        self.bn = nn.BatchNorm1d(last_channels * 2)
        self.linear = nn.Linear(last_channels * 2, emb_dim)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.feature_weight, dim=-1).view(-1, 1, 1, 1)
        x = (weights * hidden_states).sum(dim=0).transpose(1, 2) + 1e-6
        x = self.instance_norm(x)
        out1 = self.layer1(x)
        out2 = self.layer2(out1)
        out3 = self.layer3(out2)
        out4 = self.layer4(out3)
        out = F.relu(self.conv(torch.cat([out2, out3, out4], dim=1)))
        return self.linear(self.bn(self.pooling(out)))

    @classmethod
    def from_state(cls, state: dict, source: Path) -> "EcapaHead":
        """Sizes read off the checkpoint's tensors (the real one: 512/1536/256, scale 8)."""
        def shape(key):
            if key not in state:
                raise MissingWeightsError(f"{source}: not a UniSpeech ECAPA-TDNN checkpoint (no {key!r})")
            return tuple(state[key].shape)

        channels, feat_dim, _ = shape("layer1.conv.weight")
        last = shape("conv.weight")[0]
        att, att_in, _ = shape("pooling.linear1.weight")
        # Res2 scale s has s - 1 group convolutions, except s = 1: one conv over all channels
        n_convs = len({k.split(".")[3] for k in state if k.startswith("layer2.Res2Conv1dReluBn.convs.")})
        width = shape("layer2.Res2Conv1dReluBn.convs.0.weight")[0]
        scale = 1 if width == channels else n_convs + 1
        return cls(n_feats=shape("feature_weight")[0], feat_dim=feat_dim, channels=channels,
                   last_channels=last, emb_dim=shape("linear.weight")[0], scale=scale,
                   se_bottleneck=shape("layer2.SE_Connect.linear1.weight")[0],
                   attention_channels=att, global_context_att=att_in == 3 * last)


# ---------------------------------------------------------------- loading


def resolve_wavlm_ecapa(wavlm_dir, ecapa_path) -> tuple[Path, Path]:
    wavlm_dir = wavlm_dir or os.getenv("VOXLAB_WAVLM")
    ecapa_path = ecapa_path or os.getenv("VOXLAB_ECAPA")
    problems = []
    if not wavlm_dir:
        problems.append("no WavLM folder given")
    elif not (Path(wavlm_dir).expanduser() / "config.json").is_file():
        problems.append(f"{Path(wavlm_dir).expanduser() / 'config.json'} not found")
    if not ecapa_path:
        problems.append("no ECAPA checkpoint given")
    elif not Path(ecapa_path).expanduser().is_file():
        problems.append(f"{Path(ecapa_path).expanduser()} not found")
    if problems:
        raise MissingWeightsError(f"--sim wavlm_ecapa: {'; '.join(problems)}. {HOW}")
    return Path(wavlm_dir).expanduser(), Path(ecapa_path).expanduser()


def _load_checkpoint(path: Path) -> dict:
    import argparse

    try:  # training checkpoints may carry an argparse Namespace beside the weights
        with torch.serialization.safe_globals([argparse.Namespace]):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - pickle errors have many types
        raise MissingWeightsError(f"{path}: cannot be read as a weights-only torch checkpoint ({err})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise MissingWeightsError(f"{path}: expected a state dict (or {{'model': state_dict}})")
    return state


def load_wavlm_ecapa(wavlm_dir, ecapa_path) -> tuple[nn.Module, EcapaHead, dict]:
    """(WavLMModel, EcapaHead, facts about what was loaded from where)."""
    from transformers import WavLMModel

    wavlm_dir, ecapa_path = resolve_wavlm_ecapa(wavlm_dir, ecapa_path)
    try:
        wavlm = WavLMModel.from_pretrained(str(wavlm_dir), local_files_only=True)
    except (OSError, ValueError) as err:
        raise MissingWeightsError(f"{wavlm_dir}: cannot load a WavLM model ({err}). {HOW}") from None
    state = _load_checkpoint(ecapa_path)
    head_state = {k: v for k, v in state.items() if not k.startswith("feature_extract.")}
    ssl_state = {k[len(PREFIX):]: v for k, v in state.items() if k.startswith(PREFIX)}
    stray = sorted(k for k in state if k.startswith("feature_extract.") and not k.startswith(PREFIX))
    if stray:
        raise MissingWeightsError(f"{ecapa_path}: unexpected keys {stray[:5]}")

    head = EcapaHead.from_state(head_state, ecapa_path)
    n_hidden = wavlm.config.num_hidden_layers + 1
    if head.feature_weight.numel() != n_hidden or head.layer1.conv.in_channels != wavlm.config.hidden_size:
        raise MissingWeightsError(
            f"{ecapa_path} expects {head.feature_weight.numel()} hidden states of size "
            f"{head.layer1.conv.in_channels}, but {wavlm_dir} has {n_hidden} of size {wavlm.config.hidden_size}")
    strict_load(head, head_state, ecapa_path)

    facts = {"wavlm_weights": f"{wavlm_dir} (not fine-tuned: the checkpoint has no WavLM weights)",
             "ignored_keys": 0}
    if ssl_state:
        hf_keys = set(wavlm.state_dict())
        mapped, ignored = {}, 0
        for name, value in ssl_state.items():
            if any(t in name for t in TRAINING_ONLY):
                ignored += 1
                continue
            mapped[map_wavlm_key(name, hf_keys)] = value
        if "masked_spec_embed" not in hf_keys and mapped.pop("masked_spec_embed", None) is not None:
            ignored += 1
        if "masked_spec_embed" in hf_keys and "masked_spec_embed" not in mapped:
            mapped["masked_spec_embed"] = wavlm.state_dict()["masked_spec_embed"]  # unused at inference
        strict_load(wavlm, mapped, f"{ecapa_path} ({PREFIX}*)")
        facts = {"wavlm_weights": f"fine-tuned, from {ecapa_path.name}", "ignored_keys": ignored}
    return wavlm.eval(), head.eval(), facts


def _do_normalize(wavlm_dir: Path) -> bool:
    """Whether the waveform is layer-normalised first (WavLM-large: yes; read from the folder)."""
    cfg = wavlm_dir / "preprocessor_config.json"
    if cfg.is_file():
        return bool(json.loads(cfg.read_text(encoding="utf-8")).get("do_normalize", True))
    return True


class WavLMEcapaSim:
    name = "wavlm_ecapa"

    def __init__(self, wavlm_dir=None, ecapa_path=None, device: str = "cpu"):
        self.wavlm_dir, self.ecapa_path = resolve_wavlm_ecapa(wavlm_dir, ecapa_path)
        self.wavlm, self.head, self.facts = load_wavlm_ecapa(self.wavlm_dir, self.ecapa_path)
        self.normalize = _do_normalize(self.wavlm_dir)
        self.device = torch.device(device)
        self.wavlm.to(self.device)
        self.head.to(self.device)

    def info(self) -> dict:
        import transformers

        return {"name": self.name, "model": f"WavLM + ECAPA-TDNN ({self.ecapa_path.name})",
                "wavlm_dir": str(self.wavlm_dir), "checkpoint": str(self.ecapa_path),
                "transformers": transformers.__version__, "device": str(self.device),
                "normalize_waveform": self.normalize, "comparable_to_seed_tts_eval": True, **self.facts}

    @torch.inference_mode()
    def embed(self, wav: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.asarray(wav, dtype=np.float32)).to(self.device).unsqueeze(0)
        if self.normalize:
            x = F.layer_norm(x, x.shape[-1:])
        hidden = self.wavlm(x, output_hidden_states=True).hidden_states
        return self.head(torch.stack(hidden))[0].float().cpu()
