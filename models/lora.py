"""LoRA adapters on the backbone, in the official VoxCPM format (docs/design.md section 10).

Config (`model.lora`, null = none): the fields of the official `LoRAConfig` with its defaults:
`enable_lm` (TSLM + RALM), `enable_dit` (LocDiT estimator), `enable_proj` (the projections named in
`target_proj_modules`; its default on a VoxCPM2 backbone adds `fusion_concat_proj`, as the official
VoxCPM2 LoRAConfig), `r`, `alpha`, `dropout`, `target_modules_lm`, `target_modules_dit`.

A wrapped Linear keeps `weight` and `bias` under their own names and adds `lora_A` [r, in] and
`lora_B` [out, r], so a base checkpoint loads unchanged and adapter keys are the official ones
(`base_lm.layers.0.self_attn.q_proj.lora_A`). Output: W x + b + dropout(B A x) * alpha / r; A starts
Kaiming-uniform, B at zero, so a new adapter leaves the model as it was. `apply_lora` freezes every
other weight of the backbone: only adapters train.

An adapter folder holds `lora_weights.safetensors` (the adapter tensors) and `lora_config.json`
({"base_model": ..., "lora_config": {...}}), what the official trainer writes and
`VoxCPMModel.load_lora_weights` reads; ours adds `base_fingerprint` (`base_fingerprint`), and an
adapter is refused on a model whose base weights differ from it.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import warnings
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.weights import read_state_dict
from voxlab.safe_io import atomic_path

WEIGHTS_FILE, CONFIG_FILE = "lora_weights.safetensors", "lora_config.json"
ATTENTION = ["q_proj", "v_proj", "k_proj", "o_proj"]
PROJECTIONS = ["enc_to_lm_proj", "lm_to_dit_proj", "res_to_dit_proj"]
# the official VoxCPM2 LoRAConfig's default adds the concat fusion's projection
PROJECTIONS_V2 = [*PROJECTIONS, "fusion_concat_proj"]
DEFAULTS = {"enable_lm": False, "enable_dit": False, "enable_proj": False, "r": 8, "alpha": 16, "dropout": 0.0,
            "target_modules_lm": ATTENTION, "target_modules_dit": ATTENTION, "target_proj_modules": PROJECTIONS}
# what the official `VoxCPM(..., lora_weights_path=...)` builds when no config is given
OFFICIAL_LOADER_DEFAULT = {"enable_lm": True, "enable_dit": True, "enable_proj": False}


class LoRAConfigError(ValueError):
    """A `model.lora` setting that cannot be applied (an unknown field, a bad rank, no layer matched):
    the entry points print it as one line."""


class AdapterError(ValueError):
    """An adapter that does not fit the model; the message names the file and the keys."""


class LoRAWarning(UserWarning):
    """LoRA target names that match nothing in one part; an adapter whose base cannot be checked."""


def lora_config(given: dict | None, voxcpm2: bool = False) -> dict:
    """The full LoRA config (the defaults of the official LoRAConfig of VoxCPM, or of VoxCPM2: its
    `target_proj_modules` add `fusion_concat_proj`), or ValueError naming an unknown field."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise LoRAConfigError(f"model.lora: unknown field(s) {unknown}; the official LoRAConfig fields: {sorted(DEFAULTS)}")
    cfg = {**copy.deepcopy(DEFAULTS), **({"target_proj_modules": list(PROJECTIONS_V2)} if voxcpm2 else {}), **given}
    if not isinstance(cfg["r"], int) or cfg["r"] < 1:
        raise LoRAConfigError(f"model.lora.r={cfg['r']!r}: the rank must be a whole number of at least 1")
    return cfg


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        self.in_features, self.out_features = base.in_features, base.out_features
        self.r, self.alpha = r, alpha
        self.weight, self.bias = base.weight, base.bias
        self.lora_A = nn.Parameter(torch.empty(r, self.in_features, device=base.weight.device))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, r, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        # a buffer, not saved: enable/disable sets it to alpha / r or 0
        self.register_buffer("scaling", torch.tensor(alpha / r), persistent=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        delta = F.linear(F.linear(x, self.lora_A.to(x.dtype)), self.lora_B.to(x.dtype))
        return F.linear(x, self.weight, self.bias) + self.dropout(delta) * self.scaling.to(x.dtype)

    def merged(self) -> nn.Linear:
        """A plain Linear computing what this layer computes now (with dropout off)."""
        out = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                        device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            delta = (self.lora_B.float() @ self.lora_A.float()) * self.scaling.float()
            out.weight.copy_((self.weight.float() + delta).to(self.weight.dtype))
            if self.bias is not None:
                out.bias.copy_(self.bias)
        return out


def _wrap(root: nn.Module, names: list[str], cfg: dict) -> set[str]:
    """Every nn.Linear under `root` whose attribute name is in `names` becomes a LoRALinear; the
    names that matched are returned."""
    matched = set()
    for full, module in list(root.named_modules()):
        if type(module) is nn.Linear and full.rsplit(".", 1)[-1] in names:
            parent = root.get_submodule(full.rsplit(".", 1)[0]) if "." in full else root
            setattr(parent, full.rsplit(".", 1)[-1], LoRALinear(module, cfg["r"], cfg["alpha"], cfg["dropout"]))
            matched.add(full.rsplit(".", 1)[-1])
    return matched


def _warn_unmatched(source: str, key: str, part: str, names: list[str], matched: set[str]) -> None:
    """A misspelt target (`q_prj`) silently gives that part fewer adapters, or none: say so."""
    unmatched = [n for n in names if n not in matched]
    if unmatched:
        got = f"its adapters are on {sorted(matched)} only" if matched else "it gets no adapter"
        warnings.warn(LoRAWarning(f"{source}.{key}: {unmatched} match no Linear layer of the {part}, so {got}"),
                      stacklevel=3)


def apply_lora(backbone: nn.Module, given: dict, source: str = "model.lora") -> dict:
    """Add the adapters `given` (a LoRA config) asks for and freeze everything else; the full config
    is returned and recorded in `backbone.config["lora"]` (so checkpoints and exports rebuild it).
    An enabled part where some target names match nothing is a LoRAWarning naming the part and the
    names (`source` says where the config came from); nothing matched anywhere is a LoRAConfigError."""
    cfg = lora_config(given, voxcpm2=getattr(backbone, "fusion_concat_proj", None) is not None)
    unmatched = []  # (key, part, names, matched), warned once we know something matched at all
    if cfg["enable_lm"]:
        matched = set()
        for lm in (backbone.base_lm, backbone.residual_lm):
            if lm is not None:
                matched |= _wrap(lm, cfg["target_modules_lm"], cfg)
        unmatched.append(("target_modules_lm", "LM (TSLM, RALM)", cfg["target_modules_lm"], matched))
    if cfg["enable_dit"]:
        matched = _wrap(backbone.feat_decoder.estimator, cfg["target_modules_dit"], cfg)
        unmatched.append(("target_modules_dit", "LocDiT", cfg["target_modules_dit"], matched))
    if cfg["enable_proj"]:
        matched = set()
        for name in cfg["target_proj_modules"]:
            module = getattr(backbone, name, None)
            if type(module) is nn.Linear:
                setattr(backbone, name, LoRALinear(module, cfg["r"], cfg["alpha"], cfg["dropout"]))
                matched.add(name)
        unmatched.append(("target_proj_modules", "backbone's projections", cfg["target_proj_modules"], matched))
    if not lora_layers(backbone):
        raise LoRAConfigError("model.lora: no layer matched (set enable_lm, enable_dit or enable_proj, and target names "
                         f"that exist); the config was {cfg}")
    for key, part, names, matched in unmatched:
        _warn_unmatched(source, key, part, names, matched)
    for name, p in backbone.named_parameters():
        p.requires_grad_(".lora_" in f".{name}")
    if isinstance(getattr(backbone, "config", None), dict):
        backbone.config["lora"] = cfg
    return cfg


def lora_layers(module: nn.Module) -> list[LoRALinear]:
    return [m for m in module.modules() if isinstance(m, LoRALinear)]


def adapter_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter tensors under their official names."""
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()
            if k.rsplit(".", 1)[-1] in ("lora_A", "lora_B")}


def set_lora_enabled(module: nn.Module, enabled: bool) -> None:
    """Switch every adapter on (scaling alpha / r) or off (0, the base model) without unloading it."""
    for layer in lora_layers(module):
        layer.scaling.fill_(layer.alpha / layer.r if enabled else 0.0)


def merge_lora(backbone: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight, in place: plain Linears again, `config["lora"]`
    dropped, every weight trainable again. The result exports in the official folder format."""
    for full, module in list(backbone.named_modules()):
        if isinstance(module, LoRALinear):
            parent = backbone.get_submodule(full.rsplit(".", 1)[0]) if "." in full else backbone
            setattr(parent, full.rsplit(".", 1)[-1], module.merged())
    for p in backbone.parameters():
        p.requires_grad_(True)
    if isinstance(getattr(backbone, "config", None), dict):
        backbone.config["lora"] = None
    return backbone


def base_fingerprint(backbone: nn.Module) -> str:
    """A cheap hash of the base weights (every parameter but the adapters): names, shapes and up to
    1024 evenly spaced values of each, rounded to bfloat16 (so a bf16 copy of the base matches).
    Another model of the same size differs; recorded as `base_fingerprint` beside the official `base_model`."""
    digest = hashlib.sha256()
    for name, p in sorted(backbone.named_parameters()):
        if ".lora_" in f".{name}":
            continue
        flat = p.detach().reshape(-1)
        picks = torch.linspace(0, flat.numel() - 1, min(flat.numel(), 1024)).long().to(flat.device)
        digest.update(f"{name}{tuple(p.shape)}".encode())
        digest.update(flat[picks].to(torch.bfloat16).float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def save_adapter(backbone: nn.Module, folder: str | Path, base_model: str | None = None) -> Path:
    """Write `lora_weights.safetensors` and `lora_config.json` into `folder` (the official layout)."""
    from safetensors.torch import save_file

    state = adapter_state_dict(backbone)
    if not state:
        raise AdapterError("the model has no LoRA adapter to save (model.lora is null)")
    folder = Path(folder)
    with atomic_path(folder / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp))
    info = {"base_model": None if base_model is None else str(base_model), "lora_config": backbone.config["lora"],
            "base_fingerprint": base_fingerprint(backbone)}
    (folder / CONFIG_FILE).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return folder


def read_adapter(path: str | Path) -> tuple[dict[str, torch.Tensor], dict, Path]:
    """(tensors, LoRA config, weights file) of an adapter folder or file. Without a lora_config.json,
    the config is the one the official loader assumes (LM and DiT on, official defaults)."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    weights = next((folder / n for n in (WEIGHTS_FILE, "lora_weights.ckpt") if (folder / n).is_file()), None)
    if not path.is_dir():
        weights = path if path.is_file() else None
    if weights is None:
        raise AdapterError(f"{path}: no {WEIGHTS_FILE} (or lora_weights.ckpt) here")
    cfg = dict(OFFICIAL_LOADER_DEFAULT)
    if (folder / CONFIG_FILE).is_file():
        info = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        cfg = info.get("lora_config", info) if isinstance(info, dict) else cfg
    try:
        cfg = lora_config(cfg)
    except ValueError as err:
        raise AdapterError(f"{folder / CONFIG_FILE}: {err}") from None
    return read_state_dict(weights), cfg, weights


def check_base(backbone: nn.Module, config_file: Path) -> None:
    """An adapter trained on another base model (same size, other weights) would load and give
    nonsense: refuse it when the adapter records its base's fingerprint, warn when it does not
    (an official trainer's or an older VoxLab adapter) and names a base_model."""
    try:
        info = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    except (OSError, ValueError) as err:
        raise AdapterError(f"{config_file}: not readable JSON ({err})") from None
    info = info if isinstance(info, dict) else {}
    recorded, base = info.get("base_fingerprint"), info.get("base_model")
    if recorded is None:
        if base:
            warnings.warn(LoRAWarning(f"{config_file}: records base_model {base!r} but no base_fingerprint, so this "
                                      "model is not checked to be that base; load the adapter onto it only"),
                          stacklevel=3)
        return
    own = base_fingerprint(backbone)
    if own != recorded:
        raise AdapterError(f"{config_file}: an adapter for base_model {base!r} (base weights {recorded}), but this "
                           f"model's base weights are {own}: load it onto the model it was trained on")


def load_adapter(backbone: nn.Module, path: str | Path) -> nn.Module:
    """Load an adapter (ours or the official trainer's) into `backbone`, adding its LoRA layers first
    when the backbone has none. Every adapter tensor must find its parameter and every LoRA
    parameter must get one: an AdapterError names the keys otherwise (nothing is skipped)."""
    state, cfg, weights = read_adapter(path)
    check_base(backbone, weights.parent / CONFIG_FILE)
    if not lora_layers(backbone):
        apply_lora(backbone, cfg, source=str(weights.parent / CONFIG_FILE))
    own = adapter_state_dict(backbone)
    unknown, missing = sorted(set(state) - set(own)), sorted(set(own) - set(state))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(state) & set(own)) if state[k].shape != own[k].shape]
    if unknown or missing or shapes:
        parts = [f"{len(unknown)} adapter keys match no LoRA parameter (first: {unknown[:3]})" if unknown else "",
                 f"{len(missing)} LoRA parameters get no value (first: {missing[:3]})" if missing else "",
                 f"shape mismatch: {shapes[:3]}" if shapes else ""]
        raise AdapterError(f"{weights}: does not fit this model: {'; '.join(p for p in parts if p)}")
    params = dict(backbone.named_parameters())
    with torch.no_grad():
        for key, value in state.items():
            params[key].copy_(value.to(params[key].dtype))
    return backbone
