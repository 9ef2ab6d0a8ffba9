"""The latent cache gives each entry the latents of its own audio, is built by one process at a
time, stops cleanly on SIGTERM, and is not built at all for a corpus that strict mode refuses."""
from __future__ import annotations

import json
import time
import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import tts_overrides
from datamodules.latents import LatentStore, build_cache, cache_dir, latent_name, vae_fingerprint
from datamodules.manifest import ManifestError, read_manifest
from models import load_audiovae
from models.audiovae import AudioVAE
from voxlab.audio import load_audio
from voxlab.cli.train import train
from voxlab.locks import FolderLock

SR = 16000
ROOT = Path(__file__).resolve().parent.parent


def _vae():
    torch.manual_seed(0)
    return AudioVAE(encoder_dim=4, latent_dim=8, decoder_dim=16, sample_rate=SR).eval()


def _alone(vae, path):
    with torch.no_grad():
        return vae.encode(torch.from_numpy(load_audio(path, SR))[None, None])[0].T


def test_latents_belong_to_the_audio_not_to_the_id(tmp_path):
    rng = np.random.default_rng(0)
    for speaker in ("a", "b"):  # the same file name in two speaker folders
        (tmp_path / speaker).mkdir()
        sf.write(tmp_path / speaker / "0001.wav", rng.uniform(-0.5, 0.5, 4000).astype(np.float32), SR)
    both = [json.dumps({"audio": f"{s}/0001.wav", "text": "x"}) for s in ("a", "b")]
    (tmp_path / "train.jsonl").write_text(both[0] + "\n")
    (tmp_path / "val.jsonl").write_text(both[1] + "\n")
    (tmp_path / "all.jsonl").write_text("\n".join(both) + "\n")
    assert [e.utt for e in read_manifest(tmp_path / "all.jsonl")[0]] == ["a/0001", "b/0001"]  # unique ids
    vae = _vae()
    for split in ("train", "val"):  # one cache folder for both (they sit in one folder)
        build_cache(tmp_path / f"{split}.jsonl", vae, SR, progress=False)
    store = LatentStore(cache_dir(tmp_path / "val.jsonl", vae_fingerprint(vae, SR)))
    val = read_manifest(tmp_path / "val.jsonl")[0][0]
    torch.testing.assert_close(store[latent_name(val)], _alone(vae, tmp_path / "b" / "0001.wav"), atol=1e-5, rtol=0)
    # a wav edited in place is encoded again
    sf.write(tmp_path / "b" / "0001.wav", rng.uniform(-0.5, 0.5, 4000).astype(np.float32), SR)
    os.utime(tmp_path / "b" / "0001.wav", ns=(1, 10**18))  # a modification time unlike the first write's
    folder = build_cache(tmp_path / "val.jsonl", vae, SR, progress=False)
    val = read_manifest(tmp_path / "val.jsonl")[0][0]
    torch.testing.assert_close(LatentStore(folder)[latent_name(val)], _alone(vae, tmp_path / "b" / "0001.wav"),
                               atol=1e-5, rtol=0)
    # rewritten in place again: the same size, and its modification time set back to the old one
    wav = tmp_path / "b" / "0001.wav"
    before = wav.stat()
    time.sleep(0.01)  # a change time the clock can tell apart
    with open(wav, "r+b") as f:  # the same bytes count, other samples
        f.seek(before.st_size - 2000)
        f.write(rng.integers(0, 255, 2000, dtype=np.uint8).tobytes())
    os.utime(wav, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (wav.stat().st_size, wav.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    folder = build_cache(tmp_path / "val.jsonl", vae, SR, progress=False)
    val = read_manifest(tmp_path / "val.jsonl")[0][0]
    torch.testing.assert_close(LatentStore(folder)[latent_name(val)], _alone(vae, wav), atol=1e-5, rtol=0)


def test_strict_mode_refuses_a_bad_line_before_anything_is_encoded(tts_assets, tmp_path):
    root, corpus, vae_dir = tts_assets
    data = tmp_path / "corpus"
    data.mkdir()
    for split in ("train", "val"):
        lines = (corpus / f"{split}.jsonl").read_text().splitlines()
        rows = [{**json.loads(line), "audio": str(corpus / json.loads(line)["audio"])} for line in lines]
        text = "\n".join(json.dumps(r) for r in rows) + "\n"
        (data / f"{split}.jsonl").write_text(text + ('{"audio": "gone.wav", "text": "x"}\n' if split == "val" else ""))
    for name in ("vocab.txt", "lm_text.txt"):
        (data / name).write_text((corpus / name).read_text())
    runs = tmp_path / "runs"
    with pytest.raises(ManifestError, match=r"(?s)val.jsonl:\d+: missing file.*data.strict=true"):
        train("d256s9", "tiny", tts_overrides(root, data, vae_dir) + [f"run.root={runs}", "data.strict=true"])
    assert not (data / "latents").exists() and not runs.exists()


def test_a_second_cache_build_waits_for_the_first_then_sigterm_stops_it_cleanly(tts_assets, tmp_path):
    """The test holds the cache folder's lock as a first build would; the training process says
    whom it waits for, gets SIGTERM while waiting, and once the lock is free encodes one batch,
    saves it and exits 130 with the resume command; the resume then trains."""
    root, corpus, vae_dir = tts_assets
    data = tmp_path / "corpus"
    data.mkdir()
    for name in ("train.jsonl", "val.jsonl", "vocab.txt", "lm_text.txt"):
        (data / name).write_text((corpus / name).read_text())
    (data / "wavs").symlink_to(corpus / "wavs")
    vae = load_audiovae(vae_dir)
    folder = cache_dir(data / "train.jsonl", vae_fingerprint(vae, SR, 2))
    folder.mkdir(parents=True)
    runs = tmp_path / "runs"
    args = tts_overrides(root, data, vae_dir, steps=1) + [f"run.root={runs}", "callbacks.tts_samples._target_=null"]
    lock = FolderLock(folder, what="latent cache").acquire()
    proc = subprocess.Popen([sys.executable, "-m", "voxlab.cli.train", "--exp", "d256s9", "--scale", "tiny", *args],
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if "[lock] waiting for" in line:
                break
        assert f"waiting for pid {os.getpid()}" in "".join(seen), "".join(seen)
        proc.send_signal(signal.SIGTERM)
    finally:
        lock.release()
    out = "".join(seen) + proc.communicate(timeout=300)[0]
    assert proc.returncode == 130, out[-3000:]
    run = runs / "d256s9" / "version_0"
    assert "latent cache building stopped by SIGTERM" in out and f"continue with: make train RESUME={run}" in out
    assert json.loads((run / "status.json").read_text())["state"] == "interrupted"
    assert 0 < len(LatentStore(folder).index) < 2 * len(read_manifest(data / "train.jsonl")[0])
    assert not (folder / ".lock").exists()
    assert train(None, resume=str(run)) == run  # resumes from the start, finishing the cache
    assert json.loads((run / "status.json").read_text())["state"] == "finished"


def _data_copy(corpus: Path, data: Path) -> Path:
    data.mkdir()
    for name in ("train.jsonl", "val.jsonl", "vocab.txt", "lm_text.txt"):
        (data / name).write_text((corpus / name).read_text())
    (data / "wavs").symlink_to(corpus / "wavs")
    return data


@contextmanager
def _read_only(folder: Path):
    """`folder` made read-only: by its mode, or for root (who writes anyway) by a read-only bind
    mount; None where neither is possible."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)
        return
    view = folder.parent / f"{folder.name}_ro"
    view.mkdir()
    if subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(view)], capture_output=True).returncode:
        yield None
        return
    try:
        yield view
    finally:
        subprocess.run(["umount", str(view)], check=True)


def test_a_latent_cache_that_cannot_be_written_is_one_line_and_no_run_folder(tts_assets, tmp_path, capsys):
    """The cache goes beside the manifest: a read-only data folder, or a `latents` there that is a
    file, is one line naming the cache folder, before any run folder is made."""
    from voxlab.cli.train import main

    root, corpus, vae_dir = tts_assets
    runs = tmp_path / "runs"
    blocked = _data_copy(corpus, tmp_path / "blocked")
    (blocked / "latents").write_text("not a folder")
    cases = [blocked]
    with _read_only(_data_copy(corpus, tmp_path / "ro")) as ro:
        if ro is not None:
            cases.append(ro)
        for data in cases:
            args = tts_overrides(root, data, vae_dir, steps=1) + [f"run.root={runs}", "callbacks.tts_samples._target_=null"]
            assert main(["--exp", "d256s9", "--scale", "tiny", *args]) == 2, data
            err = capsys.readouterr().err
            assert f"{data / 'latents'}" in err and "cannot be written" in err and "Traceback" not in err, err[-2000:]
            assert [line.startswith("error: ") for line in err.splitlines()].count(True) == 1, err
            assert not (runs / "d256s9").exists() or not any((runs / "d256s9").iterdir()), data
    assert len(cases) == 2 or os.geteuid() == 0  # only root without mount rights tries one case
