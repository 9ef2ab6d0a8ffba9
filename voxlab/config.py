"""Experiment configuration: YAML files that extend a base, scale presets, dotted overrides.

An experiment file names its base(s) under `extends:` (paths relative to the file) and states
only what differs. Files named `base.yaml` define keys; together they are the schema. Every
other layer (scale preset, experiment files, command-line overrides) may only set keys the
bases define, with a compatible type.

Composition order: the bases (outermost first) -> scale preset (`scale/<scale>.yaml` beside
the innermost base; it may `extends:` another preset, e.g. a family's own scale) -> the experiment
chain -> command-line overrides. Values may use `${...}` interpolation and the
`add`/`mul` resolvers, so an ablation can say "TSLM layers + RALM layers" at any scale.
"""
from __future__ import annotations

import difflib
import importlib
import os
import re
from pathlib import Path
from typing import Any, Iterable

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

EXPERIMENTS_DIR = Path(__file__).resolve().parent.parent / "experiments"
RESERVED_DIRS = {"scale", "sweeps"}
# `_target_` may only name these packages (and what VOXLAB_ALLOW_TARGETS adds): a config is data,
# so naming `subprocess.run` or any importable module must not run it
OWN_PACKAGES = ("voxlab", "models", "lightning_modules", "datamodules", "callbacks", "eval")
ALLOW_ENV = "VOXLAB_ALLOW_TARGETS"
# inside those packages, only what is meant to be built from a config (by where the object is
# defined, whatever name reached it): a project function (one that deletes a folder, say) or a
# module is never called from a config
BUILDABLE = frozenset({
    "models.voxcpm.VoxCPMBackbone", "models.audiovae.AudioVAE", "models.discriminators.Discriminator",
    "lightning_modules.tts.TTSModule", "lightning_modules.audiovae.AudioVAEModule",
    "datamodules.tts.TTSDataModule", "datamodules.audio.AudioDataModule",
    "datamodules.shards.data.ShardTTSDataModule", "datamodules.shards.data.ShardAudioDataModule",
    "callbacks.audio_logging.AudioLoggingCallback", "callbacks.tts_samples.TTSSamplesCallback",
    "callbacks.ema.BackboneEMA", "callbacks.evaluation.SeedTTSEvalCallback", "callbacks.grad_norm.GradNormCallback",
    "callbacks.init_model.InitFromModel", "callbacks.lora_adapters.LoRAAdapters",
    "callbacks.official_export.OfficialExport",
})
# `_target_` names that configs saved by earlier versions hold -> where the object lives now
MOVED_TARGETS: dict[str, str] = {"voxlab.init_model.InitFromModel": "callbacks.init_model.InitFromModel"}
# values read outside this module (lightning_modules/, samplers) that must be checked at compose time
CHOICES = {"nonfinite.policy": ("skip", "stop")}
POSITIVE = ("data.max_batch_size", "data.frame_budget", "nonfinite.min_batches")
SHARES = ("nonfinite.max_skip_share", "data.prompt_prob")  # between 0 and 1

OmegaConf.register_new_resolver("add", lambda *xs: sum(xs), replace=True)
OmegaConf.register_new_resolver("mul", lambda a, b: a * b, replace=True)


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads `1e-4` as a string; researchers mean a float."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def load_yaml(text: str):
    return yaml.load(text, Loader=_Loader)


class ConfigError(ValueError):
    """A configuration problem, with a message that names the file and key."""


def available_experiments(root: Path | None = None) -> dict[str, Path]:
    """Experiment name -> file. Base files, scale presets and sweeps are not experiments."""
    root = Path(root or EXPERIMENTS_DIR)
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*.yaml")):
        rel = path.relative_to(root)
        if path.stem == "base" or RESERVED_DIRS & set(rel.parts[:-1]):
            continue
        if path.stem in found:
            raise ConfigError(f"experiment name {path.stem!r} is defined twice: {found[path.stem]} and {path}")
        found[path.stem] = path
    return found


def find_experiment(name: str, root: Path | None = None) -> Path:
    if name.endswith((".yaml", ".yml")) and Path(name).is_file():
        return Path(name).resolve()
    exps = available_experiments(root)
    if name not in exps:
        close = difflib.get_close_matches(name, exps, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown experiment {name!r}.{hint} Available: {', '.join(sorted(exps))}")
    return exps[name]


def _read_yaml(path: Path) -> dict:
    try:
        data = load_yaml(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _chain(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[Path, dict]]:
    """The file and all it extends, root base first."""
    if path in seen:
        raise ConfigError(f"{path}: circular `extends`")
    data = _read_yaml(path)
    parents = data.pop("extends", []) or []
    parents = [parents] if isinstance(parents, str) else parents
    out: list[tuple[Path, dict]] = []
    for parent in parents:
        ppath = (path.parent / parent).resolve()
        if not ppath.is_file():
            raise ConfigError(f"{path}: extends {parent!r}, which does not exist ({ppath})")
        for item in _chain(ppath, seen + (path,)):
            if item[0] not in [p for p, _ in out]:
                out.append(item)
    out.append((path, data))
    return out


def _flat_keys(node: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> value for every leaf and every mapping of a plain nested dict."""
    out: dict[str, Any] = {}
    if isinstance(node, dict):
        for key, value in node.items():
            full = f"{prefix}.{key}" if prefix else str(key)
            out[full] = value
            out.update(_flat_keys(value, full))
    return out


def _type_name(value: Any) -> str:
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "mapping"}.get(
        type(value), type(value).__name__)


def _compatible(expected: Any, value: Any) -> bool:
    if expected is None or value is None:
        return True
    if any(isinstance(v, str) and "${" in v for v in (expected, value)):
        return True  # interpolation: its type is known only after resolution
    if isinstance(expected, bool) or isinstance(value, bool):
        return isinstance(expected, bool) and isinstance(value, bool)
    if isinstance(expected, float):
        return isinstance(value, (int, float))
    if isinstance(expected, int):
        return isinstance(value, int)
    if isinstance(expected, (list, tuple)):
        return isinstance(value, (list, tuple))
    return type(expected) is type(value)


def validate_layer(schema: dict, layer: dict, source: str) -> None:
    """Every key of `layer` must be in `schema`, with a compatible type."""
    valid = _flat_keys(schema)
    for key, value in _flat_keys(layer).items():
        if key not in valid:
            parent = key.rsplit(".", 1)[0] if "." in key else ""
            if parent in valid and valid[parent] is None:
                continue  # a free-form section (null in the schema)
            if any(key.startswith(p + ".") and valid[p] is None for p in valid):
                continue
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{source}: unknown key {key!r}{hint}")
        if not _compatible(valid[key], value):
            raise ConfigError(
                f"{source}: key {key!r} expects {_type_name(valid[key])}, got {_type_name(value)} ({value!r})")


def parse_overrides(items: Iterable[str]) -> dict:
    """`a.b=1 c=[1,2]` -> nested dict, values parsed as YAML scalars."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form dotted.key=value")
        key, raw = item.split("=", 1)
        value = load_yaml(raw) if raw != "" else ""
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def compose(exp: str, scale: str | None = None, overrides: Iterable[str] = (),
            root: Path | None = None) -> DictConfig:
    """Build the resolved, validated config of experiment `exp`."""
    path = find_experiment(exp, root)
    chain = _chain(path)
    bases = [(p, d) for p, d in chain if p.stem == "base"]
    if not bases:
        raise ConfigError(f"{path}: extends no base.yaml, so there is no schema to validate against")
    schema = OmegaConf.to_container(OmegaConf.merge(*[OmegaConf.create(d) for _, d in bases]))
    base_path = bases[-1][0]
    layers: list[tuple[str, dict]] = [(str(p), d) for p, d in bases]
    if scale:
        scale_path = base_path.parent / "scale" / f"{scale}.yaml"
        if not scale_path.is_file():
            options = sorted(p.stem for p in (base_path.parent / "scale").glob("*.yaml"))
            raise ConfigError(f"unknown scale {scale!r} for {path.stem}; available: {', '.join(options) or 'none'}")
        layers += [(str(p), d) for p, d in _chain(scale_path)]  # a preset may extend another
    n_bases = len(layers)
    layers += [(str(p), d) for p, d in chain if p.stem != "base"]
    layers.append(("command-line override", parse_overrides(overrides)))
    for source, layer in layers[n_bases:]:
        validate_layer(schema, layer, source)
    cfg = OmegaConf.merge(*[OmegaConf.create(d) for _, d in layers])
    cfg.experiment = path.stem
    cfg.scale = scale
    cfg.overrides = list(overrides)
    cfg = resolve(cfg, schema)
    check_values(cfg)
    return cfg


def check_values(cfg: DictConfig) -> None:
    """Enumerated options and positive sizes: a typo or a 0 must not pass as a default."""
    for key, options in CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value is not None and value not in options:
            close = difflib.get_close_matches(str(value), options, n=1, cutoff=0.4)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{key}={value!r} is not one of {', '.join(options)}{hint}")
    for key in POSITIVE:
        value = OmegaConf.select(cfg, key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            raise ConfigError(f"{key}={value!r}: must be a positive number")
    for key in SHARES:
        value = OmegaConf.select(cfg, key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not 0 <= value <= 1):
            raise ConfigError(f"{key}={value!r}: must be a share between 0 and 1")


def resolve(cfg: DictConfig, schema: dict | None = None) -> DictConfig:
    """Resolve interpolations and check resolved types against the schema."""
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
    except Exception as err:  # omegaconf raises several types for bad interpolations
        raise ConfigError(f"config interpolation failed: {err}") from None
    if schema is not None:
        validate_layer(schema, {k: v for k, v in plain.items() if k not in ("experiment", "scale", "overrides")},
                       "resolved config")
    return OmegaConf.create(plain)


def load_run_config(path: str | Path) -> DictConfig:
    """The resolved config saved in a run folder (or any config.yaml)."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{path}: no config.yaml here")
    return OmegaConf.create(_read_yaml(path))


def instantiate(node: DictConfig | dict, *args: Any, **kwargs: Any) -> Any:
    """Build the object a config node describes (models, callbacks): `_target_` is the dotted class
    or function path; the node's other keys (and `kwargs`) are its keyword arguments. Nested nodes
    are left as config for the target to build itself."""
    params = OmegaConf.to_container(node, resolve=True) if isinstance(node, (DictConfig, ListConfig)) else dict(node)
    target = params.pop("_target_", None)
    if not target:
        raise ConfigError(f"config node has no _target_: {sorted(params)}")
    params.update(kwargs)
    key = node._get_full_key("_target_") if isinstance(node, DictConfig) else "_target_"
    return locate(target, key=key or "_target_")(*args, **params)


def build(cfg: DictConfig, section: str, **pieces: Any) -> Any:
    """Build the object `cfg.<section>._target_` names for the sections whose target takes the
    whole config (`module`, `datamodule`: their other keys are settings it reads), with `pieces`
    (what the entry point resolved for it: voxlab.cli.pieces) as keyword arguments."""
    return locate(cfg[section]._target_, key=f"{section}._target_")(cfg, **pieces)


def allowed_targets() -> list[str]:
    extra = [t.strip() for t in os.environ.get(ALLOW_ENV, "").split(",") if t.strip()]
    return [*OWN_PACKAGES, *extra]


def _within(target: str, prefixes) -> bool:
    return any(target == a or target.startswith(a + ".") for a in prefixes)


def check_target(target: str, key: str = "_target_") -> None:
    """`target` must lie inside an allowed package or module (a dotted prefix), checked before
    anything is imported."""
    if not isinstance(target, str) or not target:
        raise ConfigError(f"{key} must be a dotted name, got {target!r}")
    if _within(target, allowed_targets()):
        return
    raise ConfigError(f"{key} {target!r} is outside the project's packages ({', '.join(OWN_PACKAGES)}); "
                      f"nothing was imported. To allow it, set {ALLOW_ENV}=\"{target}\" (comma-separated "
                      "dotted names: a package allows everything in it)")


def locate(target: str, key: str = "_target_") -> Any:
    """The object at dotted path `target` (`package.module.Name`), in an allowed package and, in
    the project's own, one of BUILDABLE; a name that has moved (MOVED_TARGETS) is followed, so old
    run folders and checkpoints keep loading. `key` names the setting in errors."""
    target = MOVED_TARGETS.get(target, target)
    check_target(target, key)
    module_name, _, attr = target.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError(f"{key} {target!r} cannot be imported: {err}") from None
    if _within(target, allowed_targets()[len(OWN_PACKAGES):]):  # allowed by name: the user's to build
        return obj
    if f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}" not in BUILDABLE:
        raise ConfigError(f"{key}={target!r} is not a class meant to be built from a config (voxlab.config."
                          "BUILDABLE lists them); nothing was built")
    return obj


def check_targets(cfg: DictConfig | dict, prefix: str = "") -> None:
    """`locate` every `_target_` of the config (each a ConfigError naming its key), so that a run
    refuses a bad one before it reads data or trains anything (a tiny text LM, a VAE), not when the
    piece is built at last."""
    items = cfg.items() if isinstance(cfg, (dict, DictConfig)) else []
    for key, value in items:
        name = f"{prefix}{key}"
        if key == "_target_" and value:
            locate(value, key=name)
        elif isinstance(value, (dict, DictConfig)):
            check_targets(value, name + ".")


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)
