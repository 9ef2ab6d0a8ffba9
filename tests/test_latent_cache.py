"""The latent cache: exact per-utterance latents, incremental builds, keyed by the VAE."""
import json

import numpy as np
import soundfile as sf
import torch

from datamodules.latents import LatentStore, build_cache, cache_dir, latent_name, vae_fingerprint
from datamodules.manifest import read_manifest
from models.audiovae import AudioVAE
from voxlab.audio import load_audio

SR = 16000


def _tiny_vae(seed=0):
    torch.manual_seed(seed)
    return AudioVAE(encoder_dim=4, latent_dim=8, decoder_dim=16, sample_rate=SR).eval()


def _manifest(tmp_path, n):
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n):
        path = tmp_path / f"u{i}.wav"
        if not path.exists():
            sf.write(str(path), rng.uniform(-0.5, 0.5, 3000 + 1700 * i).astype(np.float32), SR)
        lines.append(json.dumps({"utt": f"u{i}", "audio": path.name, "text": "x"}))
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path / "train.jsonl"


def test_cache_holds_each_utterance_exact_latents(tmp_path):
    vae = _tiny_vae()
    manifest = _manifest(tmp_path, 4)
    folder = build_cache(manifest, vae, SR, shard_size=3, progress=False)
    assert folder == cache_dir(manifest, vae_fingerprint(vae, SR))
    assert sorted(p.name for p in folder.glob("shard_*.pt")) == ["shard_00000.pt", "shard_00001.pt"]
    store = LatentStore(folder)
    names = [latent_name(e) for e in read_manifest(manifest)[0]]
    for i in range(4):
        wav = torch.from_numpy(load_audio(tmp_path / f"u{i}.wav", SR))[None, None]
        with torch.no_grad():
            alone = vae.encode(wav)[0].T
        assert store[names[i]].shape == (-(-wav.shape[-1] // 640), 8)
        torch.testing.assert_close(store[names[i]], alone, atol=1e-5, rtol=1e-5)


def test_cache_is_incremental_and_keyed_by_the_vae(tmp_path):
    vae = _tiny_vae()
    manifest = _manifest(tmp_path, 2)
    folder = build_cache(manifest, vae, SR, progress=False)
    first = (folder / "shard_00000.pt").stat().st_mtime_ns
    assert build_cache(manifest, vae, SR, progress=False) == folder  # nothing to do
    assert (folder / "shard_00000.pt").stat().st_mtime_ns == first
    manifest = _manifest(tmp_path, 3)
    build_cache(manifest, vae, SR, progress=False)
    u2 = latent_name(read_manifest(manifest)[0][2])
    assert json.loads((folder / "index.json").read_text())[u2] == "shard_00001.pt"
    other = build_cache(manifest, _tiny_vae(seed=1), SR, progress=False)
    assert other != folder  # different weights never reuse the cache
    assert vae_fingerprint(vae, 22050) != vae_fingerprint(vae, SR)
