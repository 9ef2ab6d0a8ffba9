"""Validation that scales (datamodules/manifest.py): the check's outcome cached beside the
manifest and reused, invalidated by an edit or a touched file, the same in parallel as serial,
and data.validate=lazy skipping (and counting) a bad entry when it is met."""
import json
import os

import numpy as np
import pytest
import soundfile as sf
from omegaconf import OmegaConf

import datamodules.manifest as manifest_module
from datamodules.audio import AudioDataset
from datamodules.manifest import cache_path, read_configured, read_manifest

SR = 16000


@pytest.fixture
def corpus(tmp_path):
    """A manifest of 8 good lines and 3 bad ones (missing file, stereo, not JSON)."""
    (tmp_path / "wavs").mkdir()
    rows = []
    for i in range(8):
        sf.write(str(tmp_path / "wavs" / f"u{i}.wav"), np.full(SR // 4 + 100 * i, 0.1, np.float32), SR)
        rows.append(json.dumps({"audio": f"wavs/u{i}.wav", "text": f"line {i}", "duration": 0.25}))
    sf.write(str(tmp_path / "wavs" / "stereo.wav"), np.zeros((SR // 4, 2), np.float32), SR)
    rows[2:2] = [json.dumps({"audio": "wavs/gone.wav", "text": "missing", "duration": 0.25}),
                 json.dumps({"audio": "wavs/stereo.wav", "text": "two channels"}), "{not json"]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(rows) + "\n")
    return path


def _count_headers(monkeypatch):
    calls = []
    real = manifest_module.sf.info
    monkeypatch.setattr(manifest_module.sf, "info", lambda p: calls.append(p) or real(p))
    return calls


def _result(entries, report):
    return [(e.utt, e.audio, e.duration, e.line, e.stamp) for e in entries], report.summary()


def test_the_cache_is_reused_and_invalidated(corpus, monkeypatch):
    first = _result(*read_manifest(corpus))
    assert cache_path(corpus).is_file()
    calls = _count_headers(monkeypatch)
    assert _result(*read_manifest(corpus)) == first and calls == []  # no audio header read again
    assert "3 bad" in first[1] and "missing file: 1" in first[1]  # bad entries still in the one summary

    wav = corpus.parent / "wavs" / "u5.wav"
    os.utime(wav, ns=(wav.stat().st_atime_ns, wav.stat().st_mtime_ns + 10**9))  # a touched file
    entries, _ = read_manifest(corpus)
    assert [str(p) for p in calls] == [str(wav)]  # only its line is checked again
    assert next(e for e in entries if e.audio == wav).stamp.endswith(str(wav.stat().st_mtime_ns))

    calls.clear()
    corpus.write_text(corpus.read_text() + json.dumps({"audio": "wavs/u0.wav", "text": "again", "utt": "new"}) + "\n")
    entries, report = read_manifest(corpus)  # an edited manifest: checked whole
    assert len(calls) == 10 and report.total == 12 and entries[-1].utt == "new"

    calls.clear()
    read_manifest(corpus, max_duration=0.26)  # other settings: not the cached check
    assert len(calls) == 10


def test_parallel_equals_serial(corpus, monkeypatch):
    monkeypatch.setattr(manifest_module, "CHUNK", 2)  # 11 lines -> 6 tasks over 2 processes
    serial = _result(*read_manifest(corpus, cache=False))
    assert _result(*read_manifest(corpus, workers=2, cache=False)) == serial
    assert not cache_path(corpus).exists()


def test_lazy_validation_skips_and_counts_a_bad_entry(corpus, monkeypatch):
    data = OmegaConf.create({"min_duration": 0.0, "max_duration": 20.0, "strict": False, "validate": "lazy",
                             "validate_workers": 1})
    calls = _count_headers(monkeypatch)
    entries, report = read_configured(data, corpus)
    assert calls == [] and report.total == 11  # no audio read up front...
    assert sorted(report.bad) == ["invalid JSON", "missing field"]  # ...only the lines (stereo: no duration)
    gone = next(i for i, e in enumerate(entries) if e.audio.name == "gone.wav")
    dataset = AudioDataset(entries, SR, lazy=True)
    item = dataset[gone]  # the missing file is skipped for the next entry
    assert item["utt"] == entries[gone + 1].utt and dataset.skipped == 1
    assert [dataset[i]["utt"] for i in range(len(entries)) if i != gone] == \
        [e.utt for i, e in enumerate(entries) if i != gone] and dataset.skipped == 1
    with pytest.raises(manifest_module.ManifestError, match="data.validate='eager'"):
        read_configured(OmegaConf.merge(data, {"validate": "eager"}), corpus)
