"""The VoxCPM2 backbone as experiments (issue 27 item 3): `voxcpm2` (experiments/tts/v2/) builds the
official release's architecture at its default size, and the rows of sweeps/v1_to_v2.yaml go from
d256s9 to voxcpm2 changing one switch at a time, with the same sizes at tiny and paper scale.
(Training voxcpm2 at tiny scale: tests/test_tts_training.py; its loss against the official VoxCPM2
training forward: tests/test_v2_parity.py and tests/test_finetune_parity.py.)"""
from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from models.official import to_official_config
from models.official_reference import build_official_v2, install_stubs, official_voxcpm2_release_config
from voxlab.config import EXPERIMENTS_DIR, compose, instantiate, load_yaml

# what each row turns on, in the sweep's order (the VoxCPM value -> the VoxCPM2 value)
SWITCHES = {"v1_to_v2_concat": {"residual_fusion": ("add", "concat")},
            "v1_to_v2_prefix": {"dit_condition_mode": ("sum", "prefix")},
            "v1_to_v2_norope": {"residual_lm_no_rope": (False, True)},
            "v1_to_v2_fsq512": {"fsq.latent_dim": (256, 512)},
            "voxcpm2": {"patch_size": (2, 4)}}


def flat_model(exp: str, scale: str | None) -> dict:
    out = {}

    def walk(node, prefix=""):
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                out[f"{prefix}{key}"] = value
    walk(OmegaConf.to_container(compose(exp, scale).model))
    return out


@pytest.mark.parametrize("scale", ["tiny", "paper"])
def test_the_sweep_changes_one_switch_per_row(scale):
    rows = load_yaml((EXPERIMENTS_DIR / "sweeps" / "v1_to_v2.yaml").read_text())["experiments"]
    assert rows == ["d256s9", *SWITCHES]
    for before, after in zip(rows, rows[1:]):
        a, b = flat_model(before, scale), flat_model(after, scale)
        changed = {k: (a.get(k), b.get(k)) for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
        assert changed == SWITCHES[after], (scale, after)


def test_voxcpm2_is_the_official_release_architecture():
    """Without a scale (and at scale release) voxcpm2 is the release's network: the official VoxCPM2Model
    built from the release config has the same parameters (names and shapes; on the meta device)."""
    install_stubs()
    pytest.importorskip("voxcpm")
    model = compose("voxcpm2").model
    assert model == compose("voxcpm2", "release").model
    official = to_official_config(model)
    release = official_voxcpm2_release_config()
    for key in ("architecture", "patch_size", "residual_lm_num_layers", "residual_lm_no_rope",
                "scalar_quantization_latent_dim", "scalar_quantization_scale", "max_length", "feat_dim"):
        assert official[key] == release[key], key
    for block in ("lm_config", "encoder_config", "dit_config"):  # sizes and settings (RoPE factors: placeholders)
        sizes = {k: v for k, v in release[block].items() if k not in ("rope_scaling", "cfm_config")}
        assert {k: official[block].get(k) for k in sizes} == sizes, block
    with torch.device("meta"):
        off = build_official_v2(release, vae_config={})
        ours = instantiate(model)
    theirs = {k: v.shape for k, v in off.named_parameters() if not k.startswith("audio_vae.")}
    assert {k: v.shape for k, v in ours.named_parameters()} == theirs
    assert sum(v.numel() for v in ours.parameters()) == 2_290_004_544
