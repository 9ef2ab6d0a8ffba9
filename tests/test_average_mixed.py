"""`make average` (voxlab/cli/average.py) of checkpoints that differ in what the result takes whole from
the newest input (VAE, tokenizer, architecture) is refused in one line naming both checkpoints."""
from __future__ import annotations

import copy

import pytest
import torch

from voxlab.cli.average import main as average_main


def tts_checkpoint(step: int) -> dict:
    """A TTS-shaped checkpoint: weights, the frozen VAE and tokenizer, the config's model section."""
    g = torch.Generator().manual_seed(step)
    return {"global_step": step,
            "state_dict": {"model.w": torch.randn(3, 2, generator=g)},
            "voxlab_config": {"experiment": "tts/d256s9",
                              "model": {"lm": {"num_attention_heads": 4, "hidden_size": 8}, "patch_size": 2,
                                        "flow": {"cfg_dropout": 0.1}}},
            "voxlab_vae": {"config": {"latent_dim": 4}, "state_dict": {"dec.w": torch.ones(2, 2)}},
            "voxlab_tokenizer": {"kind": "char", "chars": ["a", "b"]}}


def _vae_weights(c): c["voxlab_vae"]["state_dict"]["dec.w"][0, 0] = 2.0
def _vae_config(c): c["voxlab_vae"]["config"]["latent_dim"] = 8
def _vae_dtype(c): c["voxlab_vae"]["state_dict"]["dec.w"] = torch.ones(2, 2, dtype=torch.float64)
def _tokenizer(c): c["voxlab_tokenizer"]["chars"] = ["a", "c"]
def _tokenizer_kind(c): c["voxlab_tokenizer"] = {"kind": "phoneme", "voice": "en-us"}
def _heads(c): c["voxlab_config"]["model"]["lm"]["num_attention_heads"] = 2  # same shapes, another network


@pytest.mark.parametrize("change, part", [
    (_vae_weights, "VAE"), (_vae_config, "VAE"), (_vae_dtype, "VAE"),
    (_tokenizer, "tokenizer"), (_tokenizer_kind, "tokenizer"), (_heads, "architecture")])
def test_averaging_checkpoints_made_with_another_vae_tokenizer_or_architecture_is_refused(
        tmp_path, capsys, change, part):
    a, b, c = tts_checkpoint(1), tts_checkpoint(2), tts_checkpoint(3)
    change(c)  # the newest differs: its VAE etc. would silently win
    files = []
    for i, ckpt in enumerate((a, b, c)):
        files.append(str(tmp_path / f"step_{i + 1}.ckpt"))
        torch.save(ckpt, files[-1])
    out = tmp_path / "avg.ckpt"
    assert average_main([*files, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and part in err and files[0] in err and files[2] in err
    assert not out.exists()


def test_checkpoints_differing_only_in_training_settings_still_average(tmp_path):
    a, b = tts_checkpoint(1), copy.deepcopy(tts_checkpoint(2))
    b["voxlab_config"]["model"]["flow"]["cfg_dropout"] = 0.2  # a RESUME may change how it trains
    torch.save(a, tmp_path / "a.ckpt")
    torch.save(b, tmp_path / "b.ckpt")
    assert average_main([str(tmp_path / "a.ckpt"), str(tmp_path / "b.ckpt"), "--out", str(tmp_path / "o.ckpt")]) == 0
    avg = torch.load(tmp_path / "o.ckpt", weights_only=True)
    assert torch.allclose(avg["state_dict"]["model.w"], (a["state_dict"]["model.w"] + b["state_dict"]["model.w"]) / 2)
