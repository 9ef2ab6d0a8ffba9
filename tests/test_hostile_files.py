"""Hostile and broken files: a checkpoint of the wrong kind, an embedded config with keys this
version does not know, a truncated file and a pickle with a code payload each fail with a clear
error naming the file (models.load, models.load_audiovae and resuming a run)."""
from __future__ import annotations

import os

import pytest
import torch
import yaml

import models
from models.audiovae import AudioVAE
from models.tts_io import ModelPathError
from models.weights import WeightsError, export_audiovae
from models.official_reference import SMALL_VAE
from test_inference import lightning_checkpoint, make_model
from voxlab.checkpoint import CheckpointError
from voxlab.config import ConfigError, compose
from voxlab.cli.train import train


@pytest.fixture(scope="module")
def tts_ckpt(tmp_path_factory):
    return lightning_checkpoint(make_model(), tmp_path_factory.mktemp("tts") / "tts.ckpt")


def vae_checkpoint(path, config: dict | None = None):
    """What lightning_modules/audiovae.py saves (the fields the loaders read)."""
    torch.manual_seed(0)
    vae = AudioVAE(**SMALL_VAE)
    config = config or {"model": {"_target_": "models.audiovae.AudioVAE", **SMALL_VAE}}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {f"vae.{k}": v for k, v in vae.state_dict().items()},
                "hyper_parameters": {"config": config}, "voxlab_config": config, "generator_step": 1}, path)
    return path


def truncate(src, dst):
    data = src.read_bytes()
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data[: len(data) // 2])
    return dst


class Payload:
    """Unpickling this would run a shell command (writes the marker file)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def payload_file(path, marker):
    torch.save({"state_dict": {"w": torch.zeros(1)}, "evil": Payload(marker)}, path)
    return path


def run_folder(root, config: dict, ckpt_config: dict):
    run = root / "runs" / "audiovae" / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    vae_checkpoint(run / "checkpoints" / "last.ckpt", ckpt_config)
    return run


def test_wrong_kind(tmp_path, tts_ckpt):
    vae_ckpt = vae_checkpoint(tmp_path / "vae.ckpt")
    with pytest.raises(ModelPathError, match=rf"{vae_ckpt}.*not a TTS backbone.*load_audiovae"):
        models.load(vae_ckpt)
    export = export_audiovae(AudioVAE(**SMALL_VAE), tmp_path / "vae_export")
    with pytest.raises(ModelPathError, match=rf"{export}: an AudioVAE folder.*load_audiovae"):
        models.load(export)
    with pytest.raises(ModelPathError, match=rf"{export / 'audiovae.pth'}: a file that is not a Lightning checkpoint"):
        models.load(export / "audiovae.pth")
    # a TTS checkpoint gives the frozen VAE it carries; without one it is the wrong kind
    assert models.load_audiovae(tts_ckpt).config() == models.load(tts_ckpt).vae.config()
    ckpt = torch.load(tts_ckpt, weights_only=True)
    del ckpt["voxlab_vae"]
    torch.save(ckpt, tmp_path / "no_vae.ckpt")
    with pytest.raises(WeightsError, match=r"no_vae.ckpt: a checkpoint of models.voxcpm.VoxCPMBackbone, not an AudioV"):
        models.load_audiovae(tmp_path / "no_vae.ckpt")
    models.load_audiovae(vae_ckpt)  # the right kind loads


def test_unknown_key_in_embedded_config(tmp_path, tts_ckpt):
    ckpt = torch.load(tts_ckpt, weights_only=True)
    ckpt["voxlab_config"]["model"]["future_knob"] = 3
    torch.save(ckpt, tmp_path / "future.ckpt")
    future = tmp_path / "future.ckpt"
    with pytest.raises(ModelPathError, match=rf"{future}: backbone config not understood.*future_knob"):
        models.load(tmp_path / "future.ckpt")
    vae_cfg = {"model": {"_target_": "models.audiovae.AudioVAE", **SMALL_VAE, "future_knob": 3}}
    path = vae_checkpoint(tmp_path / "future_vae.ckpt", vae_cfg)
    with pytest.raises(WeightsError, match=rf"{path}: AudioVAE config not understood.*future_knob"):
        models.load_audiovae(path)


def test_resume_refuses_unknown_keys_in_saved_config(tmp_path):
    from omegaconf import OmegaConf
    good = OmegaConf.to_container(compose("audiovae", "tiny"))
    future = OmegaConf.to_container(compose("audiovae", "tiny"))
    future["module"]["future_knob"] = 1
    # the key only in the checkpoint's embedded config
    run = run_folder(tmp_path / "a", good, future)
    ckpt = run / "checkpoints" / "last.ckpt"
    with pytest.raises(ConfigError, match=rf"{ckpt} \(saved config\): unknown key 'module.future_knob'"):
        train(None, resume=str(run))
    with pytest.raises(ConfigError, match=rf"{ckpt} \(saved config\): unknown key 'module.future_knob'"):
        train(None, resume=str(ckpt))
    # the key in the run's config.yaml
    run = run_folder(tmp_path / "b", future, good)
    with pytest.raises(ConfigError, match=rf"{run / 'config.yaml'} \(saved config\): unknown key 'module.future_knob'"):
        train(None, resume=str(run))
    assert not (run / "status.json").exists()  # nothing was started


def test_truncated_files(tmp_path, tts_ckpt):
    """One failure, one error type: every reader of a torch file raises CheckpointError."""
    cut = r": cannot be read with torch.load\(weights_only=True\): truncated or corrupt\?"
    bad_tts = truncate(tts_ckpt, tmp_path / "tts_cut.ckpt")
    with pytest.raises(CheckpointError, match=rf"{bad_tts}{cut}"):
        models.load(bad_tts)
    bad_vae = truncate(vae_checkpoint(tmp_path / "vae.ckpt"), tmp_path / "vae_cut.ckpt")
    with pytest.raises(CheckpointError, match=rf"{bad_vae}{cut}"):
        models.load_audiovae(bad_vae)
    export = export_audiovae(AudioVAE(**SMALL_VAE), tmp_path / "export")
    truncate(export / "audiovae.pth", export / "audiovae.pth")
    with pytest.raises(CheckpointError, match=rf"{export / 'audiovae.pth'}{cut}"):
        models.load_audiovae(export)
    from omegaconf import OmegaConf
    config = OmegaConf.to_container(compose("audiovae", "tiny"))
    run = run_folder(tmp_path / "r", config, config)
    ckpt = run / "checkpoints" / "last.ckpt"
    truncate(ckpt, ckpt)
    with pytest.raises(CheckpointError, match=rf"{ckpt}{cut}"):
        train(None, resume=str(ckpt))
    with pytest.raises(FileNotFoundError, match=rf"{run}: no loadable checkpoint"):
        train(None, resume=str(run))


def test_pickle_with_code_payload_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    for name in ("evil.ckpt", "evil.pth"):
        payload_file(tmp_path / name, marker)
    refused = r": cannot be read with torch.load\(weights_only=True\): refused: .*could run code"
    with pytest.raises(CheckpointError, match=rf"{tmp_path / 'evil.ckpt'}{refused}"):
        models.load(tmp_path / "evil.ckpt")
    for name in ("evil.ckpt", "evil.pth"):
        with pytest.raises(CheckpointError, match=rf"{tmp_path / name}{refused}"):
            models.load_audiovae(tmp_path / name)
    run = tmp_path / "runs" / "audiovae" / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("experiment: audiovae\n")
    payload_file(run / "checkpoints" / "last.ckpt", marker)
    with pytest.raises(CheckpointError, match=rf"{run / 'checkpoints' / 'last.ckpt'}{refused}"):
        train(None, resume=str(run / "checkpoints" / "last.ckpt"))
    assert not marker.exists()  # the payload never ran
