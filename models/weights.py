"""Safe weight files: read (torch.load(weights_only=True) or safetensors), strict loading with a
report of missing / unexpected / mis-shaped keys, and the AudioVAE's load and export.

`load_audiovae(path)` accepts:
  - an official `audiovae.pth` (a state dict, possibly under "state_dict") or `audiovae.safetensors`;
    the architecture comes from `audiovae_config.json` (our export) or the `audio_vae_config` of a
    `config.json` (an official model folder) beside it, else from the weights themselves
    (`infer_audiovae_config`; the sample rate, which no weight shows, is taken as 16 kHz). One line
    on stderr says which;
  - a folder holding one of those files (an export or an official model folder);
  - a Lightning checkpoint of `AudioVAEModule` (its config is embedded, voxlab.checkpoint; EMA weights when it has them),
    or a run folder (its last checkpoint, voxlab.runs.last_checkpoint);
  - a TTS checkpoint or run folder: the frozen VAE it carries (`voxlab_vae`).
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from models.audiovae import AudioVAE
from models.audiovae_v2 import V2_KEYS, AudioVAEV2, v2_config_from_state
from models.istft_vae import ISTFTAudioVAE
from voxlab.checkpoint import CONFIG_KEY, VAE_KEY, CheckpointError, read_config, read_weights_file, submodule_state
from voxlab.runs import LAST_CHECKPOINT, has_last_checkpoint, last_checkpoint

CONFIG_NAME = "audiovae_config.json"
AUDIOVAE_TARGET = "models.audiovae.AudioVAE"
# `decoder` in a VAE config picks the class: the official DAC-style waveform decoder (the official
# format) or the frame-rate decoder with an iSTFT head (models.istft_vae; our format only); the
# official AudioVAE V2 (models.audiovae_v2) is picked by its own config keys or a voxcpm2 config.json
DECODERS = {"waveform": AudioVAE, "waveform_v2": AudioVAEV2, "istft": ISTFTAudioVAE}
WEIGHT_NAMES = ("audiovae.safetensors", "audiovae.pth")


class WeightsError(CheckpointError):
    """Weights that do not fit: not a state dict, or keys / shapes that differ from the module's."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors file, or of a torch file (a state dict or {"state_dict": ...})."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path), device="cpu")
    obj = read_weights_file(path)
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: not a state dict of tensors")
    return dict(obj)


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """load_state_dict that names every missing, unexpected or mis-shaped key and fails on any."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(state)) if state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        def show(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f" ... (+{len(keys) - 8})" if len(keys) > 8 else "")
        lines = [f"{source}: weights do not match {type(module).__name__}"]
        if missing:
            lines.append(f"  missing {len(missing)}: {show(missing)}")
        if unexpected:
            lines.append(f"  unexpected {len(unexpected)}: {show(unexpected)}")
        if shapes:
            lines.append(f"  shape mismatch {len(shapes)}: {show(shapes)}")
        raise WeightsError("\n".join(lines))
    module.load_state_dict(state, strict=True)


def _config_beside(folder: Path) -> tuple[dict, str] | None:
    """(audio_vae_config, where it was read) from the files beside the weights, or None."""
    if (folder / CONFIG_NAME).is_file():
        return json.loads((folder / CONFIG_NAME).read_text()), str(folder / CONFIG_NAME)
    if (folder / "config.json").is_file():
        cfg = json.loads((folder / "config.json").read_text())
        vae = cfg.get("audio_vae_config")
        if str(cfg.get("architecture", "")).lower() == "voxcpm2":  # the official VoxCPM2 builds a V2,
            # its keys absent from audio_vae_config (or all of it) taking the release defaults
            return ({"decoder": "waveform_v2", **(vae if isinstance(vae, dict) else {})},
                    f"{folder / 'config.json'} (voxcpm2, AudioVAE V2)")
        if isinstance(vae, dict):
            return vae, f"{folder / 'config.json'} (audio_vae_config)"
    return None


def infer_audiovae_config(state: Mapping[str, torch.Tensor], sample_rate: int = 16000) -> dict:
    """The AudioVAE config an official-layout state dict was built with, read from its shapes:
    widths from conv outputs, each rate from its strided conv's kernel (2 * stride), depthwise from
    the decoder's 1x1 conv after a depthwise one, the noise block from its keys. Every layer index
    here is the layout documented in models.audiovae. A V2 state dict with a rate condition gives
    a V2 config (models.audiovae_v2.v2_config_from_state); one without is read as v1."""
    def weight(name: str) -> torch.Tensor:
        for key in (f"{name}.weight_v", f"{name}.weight"):
            if key in state:
                return state[key]
        raise WeightsError(f"no {name}.weight_v: not an official AudioVAE state dict, and no config beside it "
                           f"({CONFIG_NAME}, or config.json with audio_vae_config) says what it is")

    def indices(prefix: str, suffix: str = "") -> list[int]:
        return sorted({int(k[len(prefix):].split(".")[0]) for k in state
                       if k.startswith(prefix) and k.endswith(suffix) and k[len(prefix):].split(".")[0].isdigit()})

    enc_blocks = [i for i in indices("encoder.block.") if i > 0]  # block 0: the first conv
    depthwise = "decoder.model.1.weight_v" in state or "decoder.model.1.weight" in state  # the 1x1 conv
    dec_blocks = indices("decoder.model.", ".block.1.weight_v")  # the transposed conv of each block
    encoder_dim = int(weight("encoder.block.0").shape[0])  # raises first, naming what is missing
    if not enc_blocks or not dec_blocks:
        weight("encoder.block.1.block.4" if not enc_blocks else "decoder.model.1.block.1")
    config = dict(
        encoder_dim=encoder_dim,
        encoder_rates=[int(weight(f"encoder.block.{i}.block.4").shape[-1]) // 2 for i in enc_blocks],
        latent_dim=int(weight("encoder.fc_mu").shape[0]),
        decoder_dim=int(weight("decoder.model.1" if depthwise else "decoder.model.0").shape[0]),
        decoder_rates=[int(weight(f"decoder.model.{i}.block.1").shape[-1]) // 2 for i in dec_blocks],
        depthwise=depthwise, sample_rate=int(sample_rate),
        use_noise_block=any(f"decoder.model.{i}.block.2.linear.weight_v" in state for i in dec_blocks))
    return v2_config_from_state(state, config) or config


def build_audiovae(config: Mapping, source: str, state: Mapping[str, torch.Tensor] | None = None) -> AudioVAE:
    """An AudioVAE from its config (`_target_` allowed; `decoder`: waveform (default) | waveform_v2 (the
    default when a V2-only key is present, models.audiovae_v2.V2_KEYS) | istft), with
    `state` loaded strictly when given; `source` names where both came from in errors.

    An experiment config holds the keys of both decoders (the bases define the schema): for
    `decoder: istft` the waveform decoder's keys are not used, its hop is the product of
    `encoder_rates`, and its own sizes are the `istft` section."""
    config = {k: v for k, v in config.items() if k != "_target_"}
    kind = config.pop("decoder", "waveform_v2" if any(k in config for k in V2_KEYS) else "waveform")
    extra = config.pop("istft", None) or {}
    if kind not in DECODERS:
        raise WeightsError(f"{source}: decoder {kind!r} unknown; choose one of {', '.join(DECODERS)}")
    if kind == "istft" and "encoder_rates" in config:  # an experiment config: the shared keys
        hop = math.prod(int(r) for r in config["encoder_rates"])
        config = {"latent_dim": config.get("latent_dim", 64), "sample_rate": config.get("sample_rate", 16000),
                  "hop_length": hop, **extra}
    try:
        model = DECODERS[kind](**config)
    except (TypeError, ValueError) as err:
        raise WeightsError(f"{source}: AudioVAE config not understood ({err}): {config}") from None
    if state is not None:
        load_strict(model, state, source)
    return model


def audiovae_payload(vae: AudioVAE) -> dict:
    """The AudioVAE as a TTS checkpoint carries it (voxlab.checkpoint.VAE_KEY)."""
    return {"config": vae.config(), "state_dict": {k: v.detach().cpu() for k, v in vae.state_dict().items()}}


def audiovae_from_payload(payload: Mapping, source: str) -> AudioVAE:
    """The AudioVAE `audiovae_payload` recorded."""
    return build_audiovae(payload.get("config") or {}, f"{source} ({VAE_KEY})", payload.get("state_dict") or {})


def _from_checkpoint(path: Path) -> AudioVAE:
    ckpt = read_weights_file(path)
    if isinstance(ckpt, dict) and isinstance(ckpt.get(VAE_KEY), dict):  # a TTS checkpoint: its frozen VAE
        return audiovae_from_payload(ckpt[VAE_KEY], str(path))
    config = read_config(ckpt) if isinstance(ckpt, dict) else None
    if not config or "model" not in config:
        raise WeightsError(f"{path}: not an AudioVAE checkpoint (no {CONFIG_KEY} with a model section)")
    target = config["model"].get("_target_", AUDIOVAE_TARGET)
    if target != AUDIOVAE_TARGET:  # e.g. a TTS checkpoint given where a VAE is expected
        raise WeightsError(f"{path}: a checkpoint of {target}, not an AudioVAE ({AUDIOVAE_TARGET}); "
                           "a TTS model loads with models.load")
    prefix = "vae_ema" if submodule_state(ckpt, "vae_ema") else "vae"
    vae_state = submodule_state(ckpt, prefix)
    if not vae_state:
        raise WeightsError(f"{path}: no `vae.` weights in its state_dict")
    model = build_audiovae(config["model"], str(path))
    load_strict(model, vae_state, f"{path} ({prefix})")
    return model


def load_audiovae(path: str | Path) -> AudioVAE:
    """An AudioVAE in eval mode from an official file/folder, our export, a checkpoint or a run folder."""
    path = Path(path)
    if path.is_dir():
        for name in WEIGHT_NAMES:
            if (path / name).is_file():
                return load_audiovae(path / name)
        if has_last_checkpoint(path):
            return load_audiovae(last_checkpoint(path))
        raise WeightsError(f"{path}: no {' / '.join(WEIGHT_NAMES)} and no {LAST_CHECKPOINT} here")
    if not path.is_file():
        raise WeightsError(f"{path}: no such file or folder")
    if path.suffix == ".ckpt":
        model = _from_checkpoint(path)
    else:
        state = read_state_dict(path)
        beside = _config_beside(path.parent)
        if beside is None:
            try:
                config = infer_audiovae_config(state)
            except WeightsError as err:
                raise WeightsError(f"{path}: {err}") from None
            source = f"inferred from the weights ({_describe(config)}; sample rate not in the weights, 16000 taken)"
        else:
            config, source = beside
        print(f"[audiovae] {path}: architecture from {source}", file=sys.stderr)
        model = build_audiovae(config, str(path), state)
    return model.eval()


def _describe(config: Mapping) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items() if k != "sample_rate")


def export_audiovae(model: AudioVAE, folder: str | Path) -> Path:
    """Writes `audiovae.pth` ({"state_dict": weight_g/weight_v keys}, the official format) and
    `audiovae_config.json` (the official `audio_vae_config` fields) into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().float().contiguous().clone() for k, v in model.state_dict().items()}
    torch.save({"state_dict": state}, folder / "audiovae.pth")
    (folder / CONFIG_NAME).write_text(json.dumps(model.config(), indent=2) + "\n")
    return folder
