"""The model's size from its config, before anything is allocated: the network the module builds
(its `build_network(config)`, else `model._target_`) is built on PyTorch's meta device (shapes
only, no memory), and a model whose weights alone would not fit in
this machine's memory is refused in one line naming the config key behind its largest tensor
(`model.lm.intermediate_size=10000000000`), instead of an allocation traceback or the OOM killer."""
from __future__ import annotations

import os

from omegaconf import DictConfig, OmegaConf

from voxlab.config import ConfigError, instantiate, locate

BYTES_PER_PARAM = 4  # float32 weights; training needs about 4x this (gradients, AdamW's two moments)


def machine_memory() -> int:
    """Physical memory in bytes: the module is built in it before Lightning moves it to a device."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def meta_shapes(cfg: DictConfig) -> dict[str, tuple[int, ...]] | None:
    """Each parameter's shape of the network the config's module builds, or None when it cannot be
    built on the meta device (the real build then says why)."""
    import torch

    try:
        module = locate(cfg.module._target_, key="module._target_") if cfg.get("module") else None
        with torch.device("meta"):
            if hasattr(module, "build_network"):
                net = module.build_network(cfg)
            elif cfg.model.get("_target_"):
                net = instantiate(cfg.model)
            else:
                return None
    except ConfigError:
        raise  # a target the config may not build: said before anything is built
    except Exception:  # a bad value the real build reports in its own words
        return None
    return {name: tuple(p.shape) for name, p in net.named_parameters()}


def size_keys(node: DictConfig, shape: tuple[int, ...]) -> list[str]:
    """The `model.*` settings whose value is the largest dimension of `shape` that one of them gives."""
    flat: dict[str, int] = {}

    def walk(value, key):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{key}.{k}")
        elif isinstance(value, int) and not isinstance(value, bool) and value > 1:
            flat[key] = value

    walk(OmegaConf.to_container(node, resolve=True), "model")
    for dim in sorted(set(shape), reverse=True):
        keys = [f"{k}={v}" for k, v in flat.items() if v == dim]
        if keys:
            return keys
    return []


def check_model_size(cfg: DictConfig, memory: int | None = None) -> None:
    node = cfg.get("model")
    if not isinstance(node, DictConfig):
        return
    shapes = meta_shapes(cfg)
    if not shapes:
        return
    sizes = {name: _numel(shape) for name, shape in shapes.items()}
    weights = sum(sizes.values()) * BYTES_PER_PARAM
    memory = memory or machine_memory()
    if weights <= memory:
        return
    largest = max(sizes, key=sizes.get)
    named = ", ".join(size_keys(node, shapes[largest])) or "model"
    raise ConfigError(f"{named}: the model would hold {sum(sizes.values()):.3g} parameters, {_gb(weights)} of "
                      f"float32 weights alone (about 4x that to train), more than this machine's {_gb(memory)} of "
                      f"memory (largest: {largest} {list(shapes[largest])})")


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _gb(n: int) -> str:
    return f"{n / 2**30:.3g} GB"
