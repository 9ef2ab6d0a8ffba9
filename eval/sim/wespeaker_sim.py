"""wespeaker ResNet speaker embeddings from a wespeaker model folder (`config.yaml` + `avg_model.pt`).

Our own ResNet (the module and parameter names of wespeaker's `wespeaker/models/resnet.py`, so the
checkpoint loads with strict key checks), fed with Kaldi fbank from kaldi-native-fbank on int16-scaled
audio and mean-normalised over time, as wespeaker's `Speaker.extract_embedding` does (without its
optional VAD). The official wespeaker package is not installable here (docs/design.md section 8).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from eval.errors import MissingWeightsError

# name -> (block type, blocks per stage), as wespeaker's ResNet factories
ARCHS = {"ResNet18": ("basic", [2, 2, 2, 2]), "ResNet34": ("basic", [3, 4, 6, 3]),
         "ResNet50": ("bottleneck", [3, 4, 6, 3]), "ResNet101": ("bottleneck", [3, 4, 23, 3]),
         "ResNet152": ("bottleneck", [3, 8, 36, 3]), "ResNet221": ("bottleneck", [6, 16, 48, 3]),
         "ResNet293": ("bottleneck", [10, 20, 64, 3])}
HOW = ("Copy a wespeaker model folder (e.g. voxceleb_resnet34 or cnceleb_resnet34: config.yaml + "
       "avg_model.pt) to this machine and pass --wespeaker DIR (or set VOXLAB_WESPEAKER).")


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(cin, planes * self.expansion, stride)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.shortcut = _shortcut(cin, planes * self.expansion, stride)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return F.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Sequential:
    if stride == 1 and cin == cout:
        return nn.Sequential()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ResNetSpeaker(nn.Module):
    """fbank [B, T, F] -> embedding [B, embed_dim] (the last embedding layer's output)."""

    def __init__(self, arch: str = "ResNet34", feat_dim: int = 80, embed_dim: int = 256,
                 pooling_func: str = "TSTP", two_emb_layer: bool = False, m_channels: int = 32):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unsupported wespeaker model {arch!r}; supported: {sorted(ARCHS)}")
        if pooling_func != "TSTP":
            raise ValueError(f"unsupported pooling_func {pooling_func!r}; only TSTP is implemented")
        self.arch = arch
        kind, blocks = ARCHS[arch]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.two_emb_layer = two_emb_layer
        self.conv1 = nn.Conv2d(1, m_channels, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(m_channels)
        cin = m_channels
        for i, (n, stride) in enumerate(zip(blocks, [1, 2, 2, 2])):
            planes = m_channels * 2 ** i
            layers = []
            for s in [stride] + [1] * (n - 1):
                layers.append(block(cin, planes, s))
                cin = planes * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        stats_dim = int(feat_dim / 8) * m_channels * 8 * block.expansion
        self.seg_1 = nn.Linear(stats_dim * 2, embed_dim)
        if two_emb_layer:
            self.seg_bn_1 = nn.BatchNorm1d(embed_dim, affine=False)
            self.seg_2 = nn.Linear(embed_dim, embed_dim)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = feats.transpose(1, 2).unsqueeze(1)  # [B, 1, F, T]
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        # TSTP: mean and std over time of every (channel, frequency) pair
        stats = torch.cat([x.mean(-1).flatten(1), torch.sqrt(x.var(-1) + 1e-7).flatten(1)], dim=1)
        emb = self.seg_1(stats)
        if self.two_emb_layer:
            emb = self.seg_2(self.seg_bn_1(F.relu(emb)))
        return emb


def kaldi_fbank(wav: np.ndarray, num_mel_bins: int = 80, frame_length: float = 25.0,
                frame_shift: float = 10.0, sample_rate: int = 16000) -> torch.Tensor:
    """Kaldi fbank [T, num_mel_bins] of 16 kHz float audio scaled to int16 range, no dither."""
    import kaldi_native_fbank as knf

    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = float(sample_rate)
    opts.frame_opts.frame_length_ms = float(frame_length)
    opts.frame_opts.frame_shift_ms = float(frame_shift)
    opts.frame_opts.dither = 0.0
    opts.mel_opts.num_bins = int(num_mel_bins)
    opts.energy_floor = 0.0
    fb = knf.OnlineFbank(opts)
    fb.accept_waveform(float(sample_rate), np.asarray(wav, dtype=np.float32) * 32768.0)
    fb.input_finished()
    if fb.num_frames_ready == 0:
        raise ValueError(f"audio too short for one {frame_length} ms fbank frame")
    return torch.from_numpy(np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)]))


def resolve_wespeaker(folder: str | Path | None) -> Path:
    folder = folder or os.getenv("VOXLAB_WESPEAKER")
    if not folder:
        raise MissingWeightsError(f"--sim wespeaker needs a model folder. {HOW}")
    folder = Path(folder).expanduser()
    missing = [f for f in ("config.yaml", "avg_model.pt") if not (folder / f).is_file()]
    if missing:
        raise MissingWeightsError(f"wespeaker folder {folder}: missing {', '.join(missing)}. {HOW}")
    return folder


def load_wespeaker(folder: str | Path) -> tuple[ResNetSpeaker, dict, list[str]]:
    """(model, fbank args, ignored checkpoint keys). Every model key must be in the checkpoint and
    every checkpoint key in the model, except the training-only `projection.*` head."""
    import yaml

    folder = resolve_wespeaker(folder)
    config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8")) or {}
    if "model" not in config or "model_args" not in config:
        raise MissingWeightsError(f"{folder / 'config.yaml'}: needs 'model' and 'model_args' keys")
    model = ResNetSpeaker(config["model"], **config["model_args"])
    state = torch.load(folder / "avg_model.pt", map_location="cpu", weights_only=True)
    ignored = sorted(k for k in state if k.startswith("projection."))
    state = {k: v for k, v in state.items() if not k.startswith("projection.")}
    strict_load(model, state, folder / "avg_model.pt")
    fbank = (config.get("dataset_args") or {}).get("fbank_args") or {}
    fbank_args = {"num_mel_bins": fbank.get("num_mel_bins", config["model_args"].get("feat_dim", 80)),
                  "frame_length": fbank.get("frame_length", 25), "frame_shift": fbank.get("frame_shift", 10)}
    return model.eval(), fbank_args, ignored


def strict_load(model: nn.Module, state: dict, source: Path | str) -> None:
    """load_state_dict(strict=True) with a message naming the file and the mismatching keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in sorted(set(own) & set(state))
              if tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shapes:
        raise MissingWeightsError(
            f"{source}: checkpoint does not match the model: {len(missing)} missing {missing[:5]}, "
            f"{len(unexpected)} unexpected {unexpected[:5]}, {len(shapes)} shape mismatches {shapes[:3]}")
    model.load_state_dict(state, strict=True)


class WespeakerSim:
    name = "wespeaker"

    def __init__(self, folder: str | Path | None = None, device: str = "cpu"):
        self.folder = resolve_wespeaker(folder)
        self.model, self.fbank_args, self.ignored = load_wespeaker(self.folder)
        self.device = torch.device(device)
        self.model.to(self.device)

    def info(self) -> dict:
        import kaldi_native_fbank as knf

        return {"name": self.name, "model": f"wespeaker {self.model.arch} ({self.folder.name})",
                "model_dir": str(self.folder), "fbank": self.fbank_args,
                "kaldi_native_fbank": getattr(knf, "__version__", "unknown"),
                "ignored_keys": len(self.ignored), "device": str(self.device),
                "comparable_to_seed_tts_eval": False}

    @torch.inference_mode()
    def embed(self, wav: np.ndarray) -> torch.Tensor:
        feats = kaldi_fbank(wav, **self.fbank_args)
        feats = feats - feats.mean(dim=0, keepdim=True)  # CMN
        return self.model(feats.unsqueeze(0).to(self.device))[0].float().cpu()
