"""Training sees the latents that the official code makes: targets right-padded to whole patches
in the waveform (the official training packer), voice prompts left-padded to whole patches in the
waveform (the official inference's prompt cache); never a zero latent frame."""
from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

if importlib.util.find_spec("voxcpm") is None:
    pytest.skip("voxcpm==2.0.3 (installed with --no-deps) is needed for parity", allow_module_level=True)

from datamodules.latents import LatentStore, build_cache, latent_name  # noqa: E402
from datamodules.manifest import read_manifest  # noqa: E402
from datamodules.tts import TTSDataset  # noqa: E402
from models import load_audiovae  # noqa: E402
from models.packing import to_patches  # noqa: E402
from models.official_reference import SMALL_VAE, build_official, small_official_config  # noqa: E402

SR = 16000


@pytest.fixture(scope="module")
def official():
    torch.set_num_threads(1)
    model = build_official(small_official_config(), SMALL_VAE, seed=3)
    with torch.no_grad():  # off its init, so that padding choices show in the latents
        for p in model.audio_vae.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def corpus(official, tmp_path_factory):
    """Lengths of every kind around the patch: whole patches, one sample more and less, shorter
    than one patch; all of one speaker, so every item can be another's prompt."""
    root = tmp_path_factory.mktemp("prompt_corpus")
    patch_len = official.patch_size * official.audio_vae.hop_length
    lengths = [2 * patch_len, 2 * patch_len + 1, 3 * patch_len - 1, patch_len // 3, 4 * patch_len + 700]
    rng = np.random.default_rng(0)
    lines = []
    for i, n in enumerate(lengths):
        sf.write(str(root / f"u{i}.wav"), (0.3 * rng.standard_normal(n)).astype(np.float32), SR)
        lines.append(json.dumps({"utt": f"u{i}", "audio": f"u{i}.wav", "text": "ab", "speaker": "s"}))
    (root / "train.jsonl").write_text("\n".join(lines) + "\n")
    torch.save({"state_dict": official.audio_vae.state_dict()}, root / "audiovae.pth")
    (root / "config.json").write_text(json.dumps({"audio_vae_config": SMALL_VAE}))
    vae = load_audiovae(root / "audiovae.pth")
    folder = build_cache(root / "train.jsonl", vae, SR, official.patch_size, prompts=True, progress=False)
    return root, LatentStore(folder), lengths


def _name(root, utt, prompt=False):
    """The cache name of an utterance of the corpus (the cache is keyed by the audio)."""
    entries = {e.utt: e for e in read_manifest(root / "train.jsonl")[0]}
    return latent_name(entries[utt], prompt)


def _wav(root, i):
    data, _ = sf.read(str(root / f"u{i}.wav"), dtype="float32")
    return torch.from_numpy(data)


def test_targets_match_the_official_training_packer(official, corpus):
    # The packer module alone: the official `voxcpm.training` package imports `datasets` (absent).
    path = Path(importlib.util.find_spec("voxcpm").origin).parent / "training" / "packers.py"
    spec = importlib.util.spec_from_file_location("official_packers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    AudioFeatureProcessingPacker = module.AudioFeatureProcessingPacker

    root, store, lengths = corpus
    packer = AudioFeatureProcessingPacker(1, 4096, official.patch_size, official.feat_dim, official.audio_vae)
    for i in range(len(lengths)):
        with torch.no_grad():
            ref, _ = packer.extract_audio_feats(_wav(root, i))  # [1, patches, P, D]
        ours = to_patches(store[_name(root, f"u{i}")], official.patch_size)
        assert store[_name(root, f"u{i}")].shape[0] % official.patch_size == 0  # no zero frame to add
        torch.testing.assert_close(ours, ref[0], atol=1e-5, rtol=0)


def test_prompts_match_the_official_inference_prompt_cache(official, corpus, monkeypatch):
    root, store, lengths = corpus
    # The official prompt cache reads the wav with torchaudio (absent here): give it soundfile.
    fake = types.SimpleNamespace(load=lambda path: (_wav(root, int(str(path)[-5]))[None], SR))
    monkeypatch.setitem(sys.modules, "torchaudio", fake)
    monkeypatch.setattr("voxcpm.model.voxcpm.torchaudio", fake, raising=False)
    for i in range(len(lengths)):
        with torch.no_grad():
            ref = official.build_prompt_cache("ab", str(root / f"u{i}.wav"))["audio_feat"]  # [T, P, D]
        torch.testing.assert_close(to_patches(store[_name(root, f"u{i}", True)], official.patch_size), ref,
                                   atol=1e-5, rtol=0)


def test_training_items_hold_no_zero_latent_frame(official, corpus):
    """The case that tells the layouts apart: a prompt whose length is not whole patches was
    left-padded with zero latent frames before; now its patches are the prompt form exactly."""
    root, store, lengths = corpus
    entries, _ = read_manifest(root / "train.jsonl")
    tok = types.SimpleNamespace(encode=lambda text: [5] * len(text), audio_start_id=101, audio_end_id=102)
    ds = TTSDataset(entries, store, tok, official.patch_size, prompt_prob=1.0, seed=0)
    assert all(p is not None for p in ds.prompts)
    for i in range(len(ds)):
        item = ds[i]
        n_text = len(tok.encode(entries[i].text)) * 2 + 1  # prompt text + text + 101
        prompt_utt = entries[ds.prompts[i]].utt
        n_prompt = store[_name(root, prompt_utt, True)].shape[0] // official.patch_size
        prompt = item["audio_feats"][n_text:n_text + n_prompt]
        torch.testing.assert_close(prompt, to_patches(store[_name(root, prompt_utt, True)], official.patch_size))
        frames = item["audio_feats"][item["audio_mask"]].flatten(0, 1)  # every audio frame
        assert (frames.abs().sum(-1) > 0).all(), "a zero latent frame reached training"
        assert len(item["text_tokens"]) == ds.lengths()[i]


def test_prompt_loss_covers_the_prompt_patches_while_stop_and_phone_labels_stay_on_the_target(official, corpus):
    """`data.prompt_loss`: the flow loss reads the prompt's patches too; the stop label is still the last
    target patch, and the phone labels (the target's own timings) still land on the target's patches."""
    from models.packing import NO_LABEL

    root, store, _ = corpus
    entries, _ = read_manifest(root / "train.jsonl")
    tok = types.SimpleNamespace(encode=lambda text: [5] * len(text), audio_start_id=101, audio_end_id=102)
    phones = lambda utt, n: list(range(1, n + 1))  # noqa: E731 - phone k+1 at target patch k
    plain = TTSDataset(entries, store, tok, official.patch_size, prompt_prob=1.0, seed=0, phones=phones)
    both = TTSDataset(entries, store, tok, official.patch_size, prompt_prob=1.0, seed=0, phones=phones,
                      prompt_loss=True)
    for i in range(len(entries)):
        a, b = plain[i], both[i]
        n_target = -(-store[_name(root, entries[i].utt)].shape[0] // official.patch_size)
        assert torch.equal(b["loss_mask"], b["audio_mask"])  # every audio patch, prompt included
        assert int(a["loss_mask"].sum()) == n_target < int(b["loss_mask"].sum())
        assert torch.equal(a["stop_labels"], b["stop_labels"]) and int(b["stop_labels"].sum()) == 1
        assert torch.equal(a["phone_labels"], b["phone_labels"])
        assert b["phone_labels"][a["loss_mask"]].tolist() == list(range(1, n_target + 1))
        assert (b["phone_labels"][b["loss_mask"] & ~a["loss_mask"]] == NO_LABEL).all()
