"""The official fine-tuning manifest read as it is (paths from the working directory, `ref_audio`,
`dataset_id`), and items with a reference audio packed exactly as the official training packer's
`process_tts_data_with_ref` packs them (tokens 103/104 around the reference, loss on the target)."""
from __future__ import annotations

import importlib.util
import json
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from datamodules.latents import LatentStore, build_cache
from datamodules.manifest import ManifestError, read_manifest
from datamodules.tts import TTSDataset
from models import load_audiovae
from models.official_reference import SMALL_VAE, build_official, install_stubs, small_official_config

install_stubs()
if importlib.util.find_spec("voxcpm") is None:
    pytest.skip("voxcpm==2.0.3 (installed with --no-deps) is needed for parity", allow_module_level=True)
SR = 16000


def official_packer_module():
    """The packer file alone: the official `voxcpm.training` package imports `datasets` (absent)."""
    path = Path(importlib.util.find_spec("voxcpm").origin).parent / "training" / "packers.py"
    spec = importlib.util.spec_from_file_location("official_packers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    """An official manifest in manifests/, its audio paths relative to the working directory."""
    torch.set_num_threads(1)
    off = build_official(small_official_config(), SMALL_VAE, seed=3)
    with torch.no_grad():  # off its init, so that padding choices show in the latents
        for p in off.audio_vae.parameters():
            p.add_(0.05 * torch.randn_like(p))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "wavs").mkdir()
    patch_len = off.patch_size * off.audio_vae.hop_length
    rng = np.random.default_rng(0)
    for i, n in enumerate([2 * patch_len + 1, 3 * patch_len, patch_len // 3, 5 * patch_len - 7]):
        sf.write(f"wavs/u{i}.wav", (0.3 * rng.standard_normal(n)).astype(np.float32), SR)
    lines = [{"audio": "wavs/u0.wav", "text": "ab c", "ref_audio": "wavs/u2.wav", "dataset_id": 1},
             {"audio": "wavs/u1.wav", "text": "hello", "ref_audio": "wavs/u3.wav"},
             {"audio": "wavs/u3.wav", "text": "no ref", "dataset_id": 0}]
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "train.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    torch.save({"state_dict": off.audio_vae.state_dict()}, tmp_path / "audiovae.pth")
    (tmp_path / "config.json").write_text(json.dumps({"audio_vae_config": SMALL_VAE}))
    return tmp_path, off, lines


def test_reference_items_match_the_official_packer(corpus):
    root, off, lines = corpus
    entries, report = read_manifest(root / "manifests" / "train.jsonl")
    assert report.total == 3 and len(entries) == 3
    assert entries[0].audio == (root / "wavs/u0.wav").resolve() and entries[0].dataset_id == 1
    assert entries[0].ref_audio.audio == (root / "wavs/u2.wav").resolve() and entries[2].ref_audio is None
    folder = build_cache(root / "manifests" / "train.jsonl", load_audiovae(root / "audiovae.pth"), SR, off.patch_size,
                         entries=entries, progress=False)
    tok = types.SimpleNamespace(encode=lambda text: [ord(c) + 150 for c in text], audio_start_id=101,
                                audio_end_id=102)
    ds = TTSDataset(entries, LatentStore(folder), tok, off.patch_size, prompt_prob=1.0)
    packer = official_packer_module().AudioFeatureProcessingPacker(1, 4096, off.patch_size, off.feat_dim, off.audio_vae)

    def wav(name):
        return torch.from_numpy(sf.read(str(root / name), dtype="float32")[0])

    for i, line in enumerate(lines[:2]):
        item = ds[i]
        with torch.no_grad():
            text, feats, text_mask, audio_mask, loss_mask, labels, _, _ = packer.process_tts_data_with_ref(
                wav(line["ref_audio"]), wav(line["audio"]), torch.tensor(tok.encode(line["text"]), dtype=torch.int32))
        assert item["text_tokens"].tolist() == text.tolist()
        assert item["text_mask"].int().tolist() == text_mask.tolist()
        assert item["audio_mask"].int().tolist() == audio_mask.tolist()
        assert item["loss_mask"].int().tolist() == loss_mask.tolist()
        assert item["stop_labels"].tolist() == labels.tolist()
        torch.testing.assert_close(item["audio_feats"], feats, atol=1e-5, rtol=0)
        assert len(item["text_tokens"]) == ds.lengths()[i] and ds.prompts[i] is None
    plain = ds[2]  # no ref_audio: our usual layout
    assert 103 not in plain["text_tokens"].tolist() and plain["text_tokens"][-1] == 102


def test_a_bad_reference_names_its_line(corpus):
    root, _, lines = corpus
    bad = [dict(lines[0], ref_audio="wavs/gone.wav"), dict(lines[1], dataset_id=-2), lines[2]]
    (root / "manifests" / "bad.jsonl").write_text("\n".join(json.dumps(x) for x in bad) + "\n")
    with pytest.raises(ManifestError, match=r"bad.jsonl:1: missing file: ref_audio .*gone.wav(.|\n)*"
                                            r"bad.jsonl:2: bad dataset_id"):
        read_manifest(root / "manifests" / "bad.jsonl", strict=True)
