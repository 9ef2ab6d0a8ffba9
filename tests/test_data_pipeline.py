"""Manifest validation, the frame-budget sampler, the dataset and the datamodule."""
import json
import logging

import numpy as np
import pytest
import soundfile as sf
import torch
from omegaconf import OmegaConf

from datamodules.audio import AudioDataModule, AudioDataset, collate_audio
from datamodules.manifest import ManifestError, read_manifest
from datamodules.sampler import FrameBudgetBatchSampler

SR = 16000


def _wav(path, seconds, channels=1, sr=SR):
    data = np.random.default_rng(0).uniform(-0.3, 0.3, (int(seconds * sr), channels)).astype(np.float32)
    sf.write(str(path), data if channels > 1 else data[:, 0], sr)
    return path


@pytest.fixture
def manifest(tmp_path):
    (tmp_path / "wavs").mkdir()
    rows = []
    for i in range(6):
        _wav(tmp_path / "wavs" / f"ok{i}.wav", 0.5 + 0.1 * i)
        rows.append({"audio": f"wavs/ok{i}.wav", "text": f"hello {i}", "speaker": "s0", "lang": "en"})
    _wav(tmp_path / "wavs" / "stereo.wav", 0.5, channels=2)
    _wav(tmp_path / "wavs" / "long.wav", 3.0)
    sf.write(str(tmp_path / "wavs" / "empty.wav"), np.zeros(0, np.float32), SR)
    (tmp_path / "wavs" / "broken.wav").write_bytes(b"RIFF not really a wav")
    bad = [
        {"audio": "wavs/missing.wav", "text": "gone"},
        {"audio": "wavs/stereo.wav", "text": "two channels"},
        {"audio": "wavs/long.wav", "text": "too long"},
        {"audio": "wavs/empty.wav", "text": "nothing"},
        {"audio": "wavs/broken.wav", "text": "broken"},
        {"audio": "wavs/ok0.wav", "text": "   "},
    ]
    lines = [json.dumps(r) for r in rows + bad] + ["{not json"]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bad_entries_are_counted_and_skipped(manifest, caplog):
    with caplog.at_level(logging.WARNING):
        entries, report = read_manifest(manifest, max_duration=2.0)
    assert [e.utt for e in entries] == [f"wavs/ok{i}" for i in range(6)]  # default id: the path, no suffix
    assert report.total == 13
    assert dict(report.bad) == {"missing file": 1, "several channels": 1, "too long": 1, "empty audio": 1,
                                "unreadable audio": 1, "empty text": 1, "invalid JSON": 1}
    summary = report.summary()
    assert "13 entries, 6 usable, 7 bad" in summary and f"{manifest}:7: missing file" in summary
    assert "7 bad" in caplog.text


def test_strict_mode_fails_with_the_summary(manifest):
    with pytest.raises(ManifestError, match=r"(?s)7 bad.*data.strict"):
        read_manifest(manifest, max_duration=2.0, strict=True)


def test_missing_manifest_says_make_data(tmp_path):
    with pytest.raises(ManifestError, match="make data"):
        read_manifest(tmp_path / "nope.jsonl")


def _flatten(batches):
    return sorted(i for b in batches for i in b)


def test_sampler_respects_budget_and_covers_every_item_once():
    lengths = list(np.random.default_rng(1).integers(100, 1000, 203))
    sampler = FrameBudgetBatchSampler(lengths, frame_budget=3000, max_batch_size=8, seed=3)
    batches = list(sampler)
    assert _flatten(batches) == list(range(203))
    for b in batches:
        assert len(b) <= 8 and max(lengths[i] for i in b) * len(b) <= 3000
    assert len(sampler) == len(batches)
    # a new epoch reshuffles, still a permutation
    again = list(sampler)
    assert _flatten(again) == list(range(203)) and again != batches


def test_sampler_ranks_are_disjoint_and_balanced():
    lengths = list(np.random.default_rng(2).integers(100, 1000, 101))
    per_rank = [list(FrameBudgetBatchSampler(lengths, 2500, seed=5, rank=r, world_size=3)) for r in range(3)]
    assert len({len(b) for b in per_rank}) == 1  # same number of steps on every rank
    seen = [set(i for b in batches for i in b) for batches in per_rank]
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    assert sorted(set.union(*seen)) == list(range(101))


def test_sampler_resumes_mid_epoch():
    lengths = list(range(100, 600, 5))
    full = list(FrameBudgetBatchSampler(lengths, 2000, seed=9))
    first = FrameBudgetBatchSampler(lengths, 2000, seed=9)
    it = iter(first)
    head = [next(it) for _ in range(3)]
    resumed = FrameBudgetBatchSampler(lengths, 2000, seed=9)
    resumed.load_state_dict(first.state_dict())
    assert head + list(resumed) == full


def test_sampler_default_batches_are_pinned():
    # the batches of the sampler as it was before bucket_size / jitter became settings
    lengths = [(i * 37) % 91 + 10 for i in range(40)]
    sampler = FrameBudgetBatchSampler(lengths, 300, max_batch_size=8, seed=4, bucket_size=16)
    assert sampler.all_batches(0) == [[17, 7, 27], [26, 4, 39], [9, 19, 24], [33, 1, 38, 21], [5, 15, 30, 13, 18, 28],
                                      [32, 10, 20, 25, 3, 35, 8], [34, 22], [0, 37, 23, 6], [11, 16, 31, 14], [12],
                                      [36, 29, 2]]
    assert sampler.all_batches(0) == FrameBudgetBatchSampler(lengths, 300, max_batch_size=8, seed=4, bucket_size=16,
                                                             jitter=0.1).all_batches(0)


def test_sampler_exact_sort_and_bigger_buckets_pad_less():
    from datamodules.sampler import padding_share

    rng = np.random.default_rng(4)
    lengths = [int(n) for n in np.concatenate([rng.integers(40, 80, 300), rng.integers(90, 200, 300)])]
    exact = FrameBudgetBatchSampler(lengths, 2048, seed=1, bucket_size=len(lengths), jitter=0.0).all_batches(0)
    # one bucket sorted by the exact length: the batches are runs of the sorted lengths
    spans = sorted((min(lengths[i] for i in b), max(lengths[i] for i in b)) for b in exact)
    assert all(hi <= lo_next for (_, hi), (lo_next, _) in zip(spans, spans[1:]))
    shares = [padding_share(lengths, FrameBudgetBatchSampler(lengths, 2048, seed=1, bucket_size=size).all_batches(0))
              for size in (64, 256, 1024)]
    assert shares[0] > shares[1] > shares[2] > 0
    assert padding_share(lengths, exact) < shares[2]


@pytest.mark.parametrize("settings", [{"bucket_size": 256}, {"jitter": 0.0}, {"bucket_size": 1000, "jitter": 0.3}])
def test_sampler_settings_keep_resume_and_rank_split(settings):
    lengths = list(np.random.default_rng(7).integers(20, 300, 401))
    full = list(FrameBudgetBatchSampler(lengths, 1500, seed=2, **settings))
    assert _flatten(full) == list(range(401))
    first = FrameBudgetBatchSampler(lengths, 1500, seed=2, **settings)
    it = iter(first)
    head = [next(it) for _ in range(4)]
    resumed = FrameBudgetBatchSampler(lengths, 1500, seed=2, **settings)
    resumed.seek(4)
    assert head + list(resumed) == full
    per_rank = [list(FrameBudgetBatchSampler(lengths, 1500, seed=2, rank=r, world_size=3, **settings)) for r in range(3)]
    assert len({len(b) for b in per_rank}) == 1
    assert _flatten(sum(per_rank, [])) == list(range(401))


def test_padding_share_and_batchmate_repeat():
    from datamodules.sampler import batchmate_repeat, padding_share

    assert padding_share([10, 6, 4], [[0, 1], [2]]) == pytest.approx(1 - 20 / 24)
    assert batchmate_repeat([[0, 1, 2], [3]], [[0, 1, 2], [3]]) == 1.0
    assert batchmate_repeat([[0, 1, 2], [3]], [[0, 3], [1], [2]]) == 0.0
    assert batchmate_repeat([[0, 1, 2]], [[1, 0], [2]]) == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        FrameBudgetBatchSampler([1, 2], 10, bucket_size=0)
    with pytest.raises(ValueError):
        FrameBudgetBatchSampler([1, 2], 10, jitter=-0.1)


def test_dataset_resamples_crops_and_collates(tmp_path):
    _wav(tmp_path / "a.wav", 1.0, sr=22050)
    _wav(tmp_path / "b.wav", 0.5)
    (tmp_path / "m.jsonl").write_text(
        json.dumps({"audio": "a.wav", "text": "a"}) + "\n" + json.dumps({"audio": "b.wav", "text": "b"}) + "\n")
    entries, _ = read_manifest(tmp_path / "m.jsonl")
    ds = AudioDataset(entries, SR, crop_samples=4000)
    items = [ds[0], ds[1]]
    assert len(items[0]["audio"]) == 4000 and len(items[1]["audio"]) == 4000
    full = AudioDataset(entries, SR)
    assert abs(len(full[0]["audio"]) - SR) <= 1  # 22.05 kHz -> 16 kHz
    batch = collate_audio([full[0], full[1]])
    assert batch["audio"].shape == (2, 1, len(full[0]["audio"]))
    assert batch["audio_lens"].tolist() == [len(full[0]["audio"]), len(full[1]["audio"])]
    assert torch.all(batch["audio"][1, 0, len(full[1]["audio"]):] == 0)
    assert batch["text"] == ["a", "b"]


def test_datamodule_batches(manifest):
    cfg = OmegaConf.create({"seed": 0, "data": {
        "train_manifest": str(manifest), "val_manifest": str(manifest), "sample_rate": SR,
        "min_duration": 0.1, "max_duration": 2.0, "frame_budget": 24000, "max_batch_size": 4,
        "crop_seconds": None, "peak_normalize": True, "strict": False, "num_workers": 0, "shuffle_seed": 0}})
    dm = AudioDataModule(cfg)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert sum(len(b["utt"]) for b in batches) == 6
    for b in batches:
        assert b["audio"].shape[0] * b["audio"].shape[-1] <= 24000
        assert b["audio"].abs().max() <= 0.95 + 1e-6


def test_null_fields_are_bad_entries_naming_the_line(tmp_path):
    _wav(tmp_path / "a.wav", 0.5)
    lines = [{"audio": "a.wav", "text": "ok", "utt": "good"}, {"audio": "a.wav", "text": None, "utt": "t"},
             {"audio": "a.wav", "text": "x", "speaker": None, "utt": "s"}, {"audio": None, "text": "x"},
             {"audio": "a.wav", "text": 5, "utt": "n"}]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    entries, report = read_manifest(tmp_path / "m.jsonl")
    assert [e.utt for e in entries] == ["good"] and all(e.text != "None" for e in entries)
    assert report.bad == {"null field": 3, "not a string": 1}
    assert "m.jsonl:2: null field: `text` is null" in report.summary()
    assert "m.jsonl:4: null field: `audio` is null" in report.summary()


def test_manifest_with_a_byte_order_mark(tmp_path):
    _wav(tmp_path / "a.wav", 0.5)
    (tmp_path / "m.jsonl").write_text("\ufeff" + json.dumps({"audio": "a.wav", "text": "hi", "utt": "u1"}) + "\n",
                                      encoding="utf-8")
    entries, report = read_manifest(tmp_path / "m.jsonl")
    assert [e.utt for e in entries] == ["u1"] and not report.bad
