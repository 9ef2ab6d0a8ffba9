"""Convert between the official VoxCPM `config.json` and our `config.model` (VoxCPMBackbone kwargs).

Mapping (official -> ours): lm_config -> lm (every MiniCPM field; `use_mup` defaults to true when
absent, as in the official code), encoder_config -> encoder, dit_config -> dit,
residual_lm_num_layers -> residual_lm_layers, scalar_quantization_latent_dim / _scale ->
fsq.latent_dim / fsq.scale, dit_config.cfm_config.training_cfg_rate -> flow.cfg_dropout,
patch_size, feat_dim, max_length. Everything else (architecture, dtype, device, audio_vae_config,
lm_config bos/eos ids, the other cfm_config fields...) goes to `official`, mirroring the official
nesting, and is written back unchanged; official -> ours -> official is the identity.

Architectures: `"architecture": "voxcpm"` (or absent) is VoxCPM (add fusion, summed LocDiT
condition); `"voxcpm2"` is VoxCPM2: residual_fusion=concat, dit_condition_mode=prefix,
residual_lm_no_rope read from the config, and the absent keys take the official VoxCPM2 defaults
(patch 4, residual LM 8 layers, FSQ 512, max_length 8192). Export writes the architecture back from
those switches; a mix of the two (concat with a summed condition...) has no official form.

A plain-RoPE model (`lm.rope_scaling: null`) is written as LongRoPE with all factors 1 and
original_max_position_embeddings = max_position_embeddings, which is the same function; that
form reads back as null. Ablations the official model cannot express (no FSQ, no rounding, no
RALM, no_e1, no_hres) fail with the key to blame.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from models.voxcpm import model_section

LM_KEYS = ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "num_hidden_layers",
           "vocab_size", "kv_channels", "rms_norm_eps", "rope_theta", "rope_scaling", "max_position_embeddings",
           "no_rope", "use_mup", "scale_emb", "scale_depth", "dim_model_base")
LOCAL_KEYS = ("hidden_dim", "ffn_dim", "num_heads", "num_layers", "kv_channels")
TOP_KEYS = ("lm_config", "encoder_config", "dit_config", "residual_lm_num_layers", "scalar_quantization_latent_dim",
            "scalar_quantization_scale", "patch_size", "feat_dim", "max_length")
V2_TOP_KEYS = TOP_KEYS + ("residual_lm_no_rope",)
# the official config classes' defaults for keys a config.json may leave out (voxcpm 2.0.3)
ARCH_DEFAULTS = {
    "voxcpm": {"patch_size": 2, "residual_lm_num_layers": 6, "scalar_quantization_latent_dim": 256, "max_length": 4096},
    "voxcpm2": {"patch_size": 4, "residual_lm_num_layers": 8, "scalar_quantization_latent_dim": 512, "max_length": 8192},
}
# (residual_fusion, dit_condition_mode) of each official architecture
ARCH_SWITCHES = {"voxcpm": ("add", "sum"), "voxcpm2": ("concat", "prefix")}
DEFAULT_EXTRAS: dict[str, Any] = {
    "architecture": "voxcpm", "device": "cuda", "dtype": "bfloat16",
    "lm_config": {"bos_token_id": 1, "eos_token_id": 2},
    "dit_config": {"cfm_config": {"sigma_min": 1e-06, "solver": "euler", "t_scheduler": "log-norm",
                                  "inference_cfg_rate": 2.0}},
}
TARGET = "models.voxcpm.VoxCPMBackbone"


def read_official_config(path: str | Path) -> dict:
    """config.json of an official folder (or the file itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no official VoxCPM config.json here")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON: {err}") from None


def _need(d: dict, key: str, where: str):
    if key not in d:
        raise KeyError(f"official config: missing {where}{key}")
    return d[key]


def _is_plain_rope(rs: dict | None, head_dim: int, max_pos: int) -> bool:
    return (rs is not None and rs.get("type") == "longrope" and set(rs) == {"type", "short_factor", "long_factor",
            "original_max_position_embeddings"} and rs["original_max_position_embeddings"] == max_pos
            and list(rs["short_factor"]) == [1.0] * (head_dim // 2) and list(rs["long_factor"]) == [1.0] * (head_dim // 2))


def from_official_config(official: dict) -> dict:
    """Official config.json dict -> our `config.model` dict (with `_target_`)."""
    src = copy.deepcopy(official)
    arch = str(src.get("architecture", "voxcpm")).lower()
    if arch not in ARCH_DEFAULTS:
        raise ValueError(f"official config: architecture {arch!r} unknown (VoxLab reads {', '.join(ARCH_DEFAULTS)})")
    v2, dflt = arch == "voxcpm2", ARCH_DEFAULTS[arch]
    top_keys = V2_TOP_KEYS if v2 else TOP_KEYS
    lm_src = _need(src, "lm_config", "")
    lm = {k: lm_src[k] for k in LM_KEYS if k in lm_src}
    for key in ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads",
                "num_hidden_layers", "vocab_size", "rms_norm_eps", "rope_theta", "max_position_embeddings"):
        _need(lm_src, key, "lm_config.")
    lm.setdefault("use_mup", True)  # the official MiniCPM4Config default
    head_dim = lm.get("kv_channels") or lm["hidden_size"] // lm["num_attention_heads"]
    if _is_plain_rope(lm.get("rope_scaling"), head_dim, lm["max_position_embeddings"]):
        lm["rope_scaling"] = None
    locals_ = {}
    for ours, theirs in (("encoder", "encoder_config"), ("dit", "dit_config")):
        block = _need(src, theirs, "")
        locals_[ours] = {k: block.get(k) for k in LOCAL_KEYS}
        for key in LOCAL_KEYS[:4]:
            _need(block, key, theirs + ".")
    cfm = src.get("dit_config", {}).get("cfm_config", {})
    if src.get("dit_mean_mode") or src.get("dit_config", {}).get("dit_mean_mode"):
        raise ValueError("official config: dit_mean_mode=true (mean-velocity LocDiT) is not supported")
    model = {
        "_target_": TARGET, "lm": lm, **locals_,
        "feat_dim": src.get("feat_dim", 64), "patch_size": src.get("patch_size", dflt["patch_size"]),
        "residual_lm_layers": src.get("residual_lm_num_layers", dflt["residual_lm_num_layers"]),
        "fsq": {"enabled": True, "latent_dim": src.get("scalar_quantization_latent_dim",
                                                        dflt["scalar_quantization_latent_dim"]),
                "scale": src.get("scalar_quantization_scale", 9), "quantize": True},
        "residual_input_e": True, "condition_on_residual": True,
        "flow": {"cfg_dropout": cfm.get("training_cfg_rate", 0.1), "t_mean": -0.4, "t_std": 1.0},
        "max_length": src.get("max_length", dflt["max_length"]),
    }
    if v2:
        model.update(residual_fusion="concat", dit_condition_mode="prefix",
                     residual_lm_no_rope=bool(src.get("residual_lm_no_rope", False)))
    # what the network does not use, in the official nesting
    extras = {k: v for k, v in src.items() if k not in top_keys}
    lm_extra = {k: v for k, v in lm_src.items() if k not in LM_KEYS}
    if lm_extra:
        extras["lm_config"] = lm_extra
    for theirs in ("encoder_config", "dit_config"):
        block_extra = {k: v for k, v in src[theirs].items() if k not in LOCAL_KEYS + ("cfm_config",)}
        if block_extra:
            extras[theirs] = block_extra
    cfm_extra = {k: v for k, v in cfm.items() if k != "training_cfg_rate"}
    if "cfm_config" in src.get("dit_config", {}):
        extras.setdefault("dit_config", {})["cfm_config"] = cfm_extra
    model["official"] = extras
    return model


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def to_official_config(model: dict, **overrides: Any) -> dict:
    """Our `config.model` (or `VoxCPMBackbone.config`) -> official config.json dict.

    `overrides` set top-level official fields (e.g. dtype="float32", audio_vae_config={...}).
    """
    if hasattr(model, "items") and not isinstance(model, dict):  # an OmegaConf node
        from omegaconf import OmegaConf
        model = OmegaConf.to_container(model, resolve=True)
    fsq, flow = model_section("fsq", model.get("fsq")), model_section("flow", model.get("flow"))
    problems = []
    if not fsq["enabled"]:
        problems.append("model.fsq.enabled=false")
    if not fsq["quantize"]:
        problems.append("model.fsq.quantize=false")
    if model.get("residual_lm_layers", 6) <= 0:
        problems.append("model.residual_lm_layers=0")
    if not model.get("residual_input_e", True):
        problems.append("model.residual_input_e=false")
    if not model.get("condition_on_residual", True):
        problems.append("model.condition_on_residual=false")
    if model.get("audio_start_id", 101) != 101 or model.get("audio_end_id", 102) != 102:
        problems.append("model.audio_start_id/audio_end_id other than 101/102")
    if model.get("audio_positions") is not None:  # the official model numbers positions 0, 1, 2, ...
        problems.append(f"model.audio_positions={model['audio_positions']}")
    if (model.get("phones") or {}).get("classes"):  # a head the official model has no place for
        problems.append(f"model.phones.classes={model['phones']['classes']}")
    switches = (model.get("residual_fusion", "add"), model.get("dit_condition_mode", "sum"))
    arch = next((a for a, sw in ARCH_SWITCHES.items() if sw == switches), None)
    if arch is None:
        problems.append(f"model.residual_fusion={switches[0]} with model.dit_condition_mode={switches[1]} "
                        "(voxcpm: add + sum, voxcpm2: concat + prefix)")
    if model.get("residual_lm_no_rope") and arch != "voxcpm2":
        problems.append("model.residual_lm_no_rope=true without the voxcpm2 switches")
    vae = overrides.get("audio_vae_config") or {}
    if vae.get("decoder", "waveform") != "waveform":  # the official AudioVAE class has no other decoder
        problems.append(f"an AudioVAE with the {vae['decoder']} decoder (the official AudioVAE class cannot load it)")
    if problems:
        raise ValueError("the official VoxCPM format cannot express " + ", ".join(problems))
    # the official schema has no null for kv_channels: leave it out (its default)
    lm = {k: v for k, v in model["lm"].items() if not (k == "kv_channels" and v is None)}
    lm.setdefault("use_mup", False)
    head_dim = lm.get("kv_channels") or lm["hidden_size"] // lm["num_attention_heads"]
    if lm.get("rope_scaling") is None:
        ones = [1.0] * (head_dim // 2)
        lm["rope_scaling"] = {"type": "longrope", "short_factor": ones, "long_factor": list(ones),
                              "original_max_position_embeddings": lm.get("max_position_embeddings", 32768)}
    enc, dit = model_section("encoder", model.get("encoder")), model_section("dit", model.get("dit"))
    out = {
        "lm_config": lm, "patch_size": model.get("patch_size", 2), "feat_dim": model.get("feat_dim", 64),
        "residual_lm_num_layers": model.get("residual_lm_layers", 6),
        "scalar_quantization_latent_dim": fsq["latent_dim"], "scalar_quantization_scale": fsq["scale"],
        "encoder_config": {k: enc[k] for k in LOCAL_KEYS if enc[k] is not None},
        "dit_config": {**{k: dit[k] for k in LOCAL_KEYS if dit[k] is not None},
                       "cfm_config": {"training_cfg_rate": flow["cfg_dropout"]}},
        "max_length": model.get("max_length", 4096),
    }
    if arch == "voxcpm2":
        out["residual_lm_no_rope"] = bool(model.get("residual_lm_no_rope", False))
    extras = model.get("official")
    out = _merge(out, DEFAULT_EXTRAS if extras is None else extras)
    out["architecture"] = arch  # from the switches, whatever the extras carried
    return _merge(out, overrides)
