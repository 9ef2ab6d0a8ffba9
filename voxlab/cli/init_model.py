"""Start a TTS run from a trained model instead of from scratch: the `init` config section.

`init.model` names any MODEL that `models.load` accepts (an official VoxCPM folder, our checkpoint,
run folder or export). Before anything is built, `resolve_init(cfg)` points the run at that model:
- `vae.path` = the model itself (its frozen AudioVAE encodes the latent cache and decodes samples),
- `text` = its tokenizer (an HF folder, or the characters of a character tokenizer),
- `model.lm_init.mode` = none (the weights come from the model, not from a text LM),
- the architecture: with `init.architecture: model` (the fine-tuning experiments) the run's
  `model` section becomes the model's own, keeping the experiment's `model.lora`, `model.gradient_checkpointing` and any `model.*`
  command-line override; with `init.architecture: config` the experiment's model section must
  describe the same network, else a ConfigError names every differing key.
`InitFromModel` (callbacks/init_model.py, a callback every TTS run has) then copies the model's backbone weights into the
module before the first step, strictly (every key, every shape), when the run does not resume;
a LoRA run's adapters keep their fresh start. A model with LoRA adapters is taken merged.
"""
from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from callbacks.init_model import load_init_model
from models.minicpm import MiniCPMConfig
from models.voxcpm import VoxCPMBackbone, model_section
from voxlab.config import ConfigError, parse_overrides
from voxlab.text import tokenizer_spec

ARCHITECTURES = ("config", "model")
# the keys that decide the network (the others are training settings or bookkeeping)
NETWORK_KEYS = ("lm", "encoder", "dit", "feat_dim", "patch_size", "residual_lm_layers", "fsq", "residual_input_e",
                "condition_on_residual", "audio_start_id", "audio_end_id", "residual_fusion", "dit_condition_mode",
                "residual_lm_no_rope")


def text_section(tokenizer) -> dict:
    """The `text` config section that rebuilds `tokenizer` (voxlab.text.tokenizer_spec)."""
    return {"vocab": None, "path": None, "chars": None, **tokenizer_spec(tokenizer)}


def _network(model: dict) -> dict:
    """The network-deciding part of a model section, with every default filled in."""
    import inspect

    defaults = {k: p.default for k, p in inspect.signature(VoxCPMBackbone).parameters.items()}
    out = {k: model.get(k, defaults[k]) for k in NETWORK_KEYS}
    out["lm"] = MiniCPMConfig.from_dict(dict(model["lm"]), "model.lm").to_dict()
    for name in ("encoder", "dit", "fsq"):
        out[name] = model_section(name, model.get(name))
    return out


def _differences(ours, theirs, prefix: str = "model") -> list[str]:
    if isinstance(ours, dict) and isinstance(theirs, dict):
        keys = list(ours) + [k for k in theirs if k not in ours]
        return [d for k in keys for d in _differences(ours.get(k), theirs.get(k), f"{prefix}.{k}")]
    return [] if ours == theirs else [f"{prefix}: experiment {ours!r}, init.model {theirs!r}"]


def resolve_init(cfg: DictConfig) -> DictConfig:
    """`cfg` pointed at `init.model` (see the module docstring); unchanged when it is null."""
    init = cfg.get("init")
    if init is None:
        return cfg
    if init.architecture not in ARCHITECTURES:
        raise ConfigError(f"init.architecture={init.architecture!r} is not one of {', '.join(ARCHITECTURES)}")
    if init.architecture == "model":  # the fine-tuning experiments: nothing to train without these
        for key, make in (("init.model", "MODEL"), ("data.train_manifest", "MANIFEST")):
            if not OmegaConf.select(cfg, key):
                raise ConfigError(f"{cfg.experiment}: {key} is required (make finetune {make}=...)")
    if not init.get("model"):
        return cfg
    model = load_init_model(init.model)
    kept = ("lora", "gradient_checkpointing")  # training settings of the run, not of the network
    theirs = {k: v for k, v in model.backbone.config.items() if k not in kept}
    plain = OmegaConf.to_container(cfg, resolve=True)
    if init.architecture == "model":
        adopted = {"_target_": plain["model"].get("_target_", "models.voxcpm.VoxCPMBackbone"), **theirs,
                   **{k: plain["model"].get(k) for k in kept if k in plain["model"]}}
        override = parse_overrides(cfg.get("overrides") or []).get("model", {})
        plain["model"] = OmegaConf.to_container(OmegaConf.merge(adopted, override))
    else:
        differ = _differences(_network(plain["model"]), _network(theirs))
        if differ:
            raise ConfigError(f"init.model={init.model}: its architecture differs from the experiment's model section "
                              f"({len(differ)} keys): " + "; ".join(differ[:6])
                              + (" ..." if len(differ) > 6 else "")
                              + ". Set init.architecture=model to take the architecture from the model")
    plain["model"]["lm_init"] = {**(plain["model"].get("lm_init") or {}), "mode": "none"}
    plain["vae"]["path"] = str(init.model)
    plain["text"] = {**plain.get("text", {}), **text_section(model.tokenizer)}
    if model.vae.sample_rate != plain["data"]["sample_rate"]:
        raise ConfigError(f"init.model={init.model}: its AudioVAE works at {model.vae.sample_rate} Hz but "
                          f"data.sample_rate is {plain['data']['sample_rate']}")
    return OmegaConf.create(plain)
