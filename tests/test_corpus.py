"""The embedded espeak-ng corpus: layout, manifests, test set, determinism, voices."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from datamodules.corpus import CorpusError, build_corpus, render, to_pinyin
from datamodules.corpus import espeak
from datamodules.corpus.sentences import allowed_chars, en_number, zh_number
from datamodules.corpus.voices import VOICE_BY_ID, voices

N_UTTS = 24


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return build_corpus(tmp_path_factory.mktemp("corpus") / "c", seed=0, num_utts=N_UTTS,
                        workers=1, lm_size=200, progress=False)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _meta(corpus: Path, lang: str) -> list[list[str]]:
    lines = (corpus / "seedtts" / lang / "meta.lst").read_text(encoding="utf-8").splitlines()
    return [line.split("|") for line in lines]


def test_manifests(corpus):
    train, val = _rows(corpus / "train.jsonl"), _rows(corpus / "val.jsonl")
    assert train and val
    held_out = {v.speaker for v in voices(held_out=True)}
    for row in train + val:
        assert set(row) == {"utt", "audio", "text", "duration", "speaker", "lang"}
        assert row["audio"] == f"wavs/{row['utt']}.wav"
        info = sf.info(str(corpus / row["audio"]))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert 1.0 <= row["duration"] <= 6.0
        assert abs(info.frames / info.samplerate - row["duration"]) < 1e-3
        assert row["speaker"] not in held_out
        assert VOICE_BY_ID[row["speaker"]].lang == row["lang"]
        assert not any(ch.isdigit() for ch in row["text"])
        assert set(row["text"]) <= allowed_chars(row["lang"]), row["text"]
    assert {r["lang"] for r in train} == {"en", "zh"} == {r["lang"] for r in val}
    # every training voice is used, and utterance ids are unique across splits
    assert {r["speaker"] for r in train} == {v.speaker for v in voices(held_out=False)}
    assert len({r["utt"] for r in train + val}) == len(train) + len(val)
    summary = json.loads((corpus / "corpus.json").read_text(encoding="utf-8"))
    n_test_wavs = summary["counts"]["test"]["wavs"]
    assert summary["utterances"] == N_UTTS == len(train) + len(val) + n_test_wavs
    assert summary["counts"]["train"]["items"] == len(train)


def test_the_build_keeps_each_utterances_phone_timings_from_its_own_synthesis(corpus):
    """phones.jsonl: the same timings `phone_segments` gives (the build speaks once, with phoneme
    events on), for every train and val utterance; `corpus_phones` reads them without speaking."""
    from datamodules.corpus.phones import PHONES_FILE, corpus_phones, phone_segments, render_with_phones
    from datamodules.manifest import read_manifest

    rows = {r["utt"]: r for r in _rows(corpus / PHONES_FILE)}
    entries = [e for split in ("train", "val") for e in read_manifest(corpus / f"{split}.jsonl", cache=False)[0]]
    assert set(rows) == {e.utt for e in entries}
    e = next(x for x in entries if x.lang == "zh")
    assert [n for _, _, n in phone_segments(e.text, e.lang, e.speaker)] == [p[2] for p in rows[e.utt]["phones"]]
    wav, _ = render_with_phones(e.text, e.lang, e.speaker)
    assert np.array_equal(wav, render(e.text, e.lang, e.speaker))
    stamp = (corpus / PHONES_FILE).stat().st_mtime_ns
    assert corpus_phones(corpus, entries, workers=1, progress=False)[e.utt] == rows[e.utt]["phones"]
    assert (corpus / PHONES_FILE).stat().st_mtime_ns == stamp  # nothing was missing: not rewritten


def test_seedtts_layout(corpus):
    train_texts = {r["text"] for r in _rows(corpus / "train.jsonl") + _rows(corpus / "val.jsonl")}
    held_out = {v.speaker for v in voices(held_out=True)}
    for lang in ("en", "zh"):
        items = _meta(corpus, lang)
        assert len(items) >= 2
        for utt, prompt_text, prompt_wav, target_text, gt_wav in items:
            folder = corpus / "seedtts" / lang
            assert prompt_wav.startswith("prompt-wavs/") and gt_wav == f"wavs/{utt}.wav"
            for wav in (prompt_wav, gt_wav):
                info = sf.info(str(folder / wav))
                assert (info.samplerate, info.channels) == (16000, 1)
                assert 1.0 <= info.duration <= 6.0
            assert prompt_text != target_text
            assert target_text not in train_texts and prompt_text not in train_texts
            speaker = utt.rsplit("_", 1)[0]
            assert speaker in held_out and Path(prompt_wav).stem.startswith(speaker + "_")
        # the prompt really is the same voice as the target: re-render it and compare
        utt, prompt_text, prompt_wav, _, _ = items[0]
        stored, _ = sf.read(str(corpus / "seedtts" / lang / prompt_wav), dtype="float32")
        again = render(prompt_text, lang, utt.rsplit("_", 1)[0])
        assert stored.shape == again.shape and np.abs(stored - again).max() < 2 / 32768


def test_hard_cases_beside_the_plain_test_set(corpus, monkeypatch):
    """seedtts/<lang>_hard: the plain set's voices and prompts with hard targets (a repeated word, a
    tongue twister, a long sentence in turn); the plain corpus is the same with them."""
    from datamodules.corpus.build import plan
    summary = json.loads((corpus / "corpus.json").read_text(encoding="utf-8"))
    for lang in ("en", "zh"):
        plain, hard = _meta(corpus, lang), _meta(corpus, f"{lang}_hard")
        assert len(hard) == len(plain) and summary["counts"]["hard_cases"]["lang"][lang] == len(hard)
        for (p_utt, p_text, p_wav, _, _), (utt, prompt_text, prompt_wav, target, gt_wav) in zip(plain, hard):
            assert (prompt_text, prompt_wav) == (p_text, p_wav) and utt.rsplit("_", 1)[0] == p_utt.rsplit("_", 1)[0]
            assert np.array_equal(sf.read(str(corpus / "seedtts" / lang / p_wav))[0],
                                  sf.read(str(corpus / "seedtts" / f"{lang}_hard" / prompt_wav))[0])
            assert set(target) <= allowed_chars(lang) and target not in {it[3] for it in plain}
            assert sf.info(str(corpus / "seedtts" / f"{lang}_hard" / gt_wav)).duration >= 1.0
        repeated = hard[0][3]  # the first kind: one word said three times or more
        assert max(repeated.count(repeated[i:i + 2]) for i in range(len(repeated) - 1)) >= 3, repeated
    # the hard cases draw from their own stream: the plain plan is the same without them
    import datamodules.corpus.build as build

    def plain(the_plan):
        return [(j.path, j.text) for j in the_plan["jobs"] if "_hard/" not in j.path]

    with_hard = plain(plan(0, N_UTTS))
    monkeypatch.setattr(build, "_hard_sentences", lambda lang, rng, n, exclude: [f"other {i}" for i in range(n)])
    assert plain(plan(0, N_UTTS)) == with_hard


def test_english_tongue_twisters_share_their_initial():
    import random

    from datamodules.corpus.sentences import hard_sentence

    text = hard_sentence("en", random.Random(3), "twister")
    initials = {w[0].lower() for w in text.replace(",", "").replace(".", "").split() if w not in ("and",)}
    assert len(initials) == 1, text
    long = hard_sentence("en", random.Random(3), "long")
    assert len(long.split()) >= 25


def test_lm_text(corpus):
    lines = (corpus / "lm_text.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 200
    zh = [s for s in lines if any("\u4e00" <= ch <= "\u9fff" for ch in s)]
    assert 0 < len(zh) < len(lines)
    test_texts = {t for lang in ("en", "zh") for it in _meta(corpus, lang) for t in (it[1], it[3])}
    assert not test_texts & set(lines)


def test_deterministic_across_builds_and_workers(corpus, tmp_path):
    other = build_corpus(tmp_path / "again", seed=0, num_utts=N_UTTS, workers=2, lm_size=200,
                         progress=False)
    files = sorted(p.relative_to(corpus) for p in corpus.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(other) for p in other.rglob("*") if p.is_file())
    for rel in files:
        assert (corpus / rel).read_bytes() == (other / rel).read_bytes(), rel


def test_espeak_output_does_not_depend_on_history():
    text = "The quick brown fox jumps over seven lazy dogs."
    first = espeak.synth(text, "en-us+f2")
    espeak.synth("Something else entirely, spoken first.", "en-us+m3")
    assert np.array_equal(first, espeak.synth(text, "en-us+f2"))


def _median_f0(x: np.ndarray, sr: int = 16000) -> float:
    """Autocorrelation pitch over the loud 40 ms frames (numpy only: fast, no JIT)."""
    n, f0 = 640, []
    for i in range(0, len(x) - n, n // 2):
        frame = x[i:i + n] - x[i:i + n].mean()
        if np.sqrt((frame ** 2).mean()) < 0.05:
            continue
        ac = np.correlate(frame, frame, "full")[n - 1:]
        lag = sr // 400 + int(np.argmax(ac[sr // 400:sr // 60]))
        if ac[lag] > 0.3 * ac[0]:
            f0.append(sr / lag)
    return float(np.median(f0))


def _log_spectrum(x: np.ndarray) -> np.ndarray:
    frames = np.lib.stride_tricks.sliding_window_view(x, 512)[::256] * np.hanning(512)
    s = np.abs(np.fft.rfft(frames, axis=1)).mean(axis=0)
    return np.log(s / s.sum() + 1e-8)


def test_voices_differ():
    texts = {"en": "Anna painted the old wooden boat near the river.", "zh": "小明昨天在超市买了两个苹果。"}
    f0 = {}
    for lang, text in texts.items():
        wavs = {v.speaker: render(text, lang, v.speaker) for v in voices(lang)}
        f0.update({spk: _median_f0(w) for spk, w in wavs.items()})
        spectra = {spk: _log_spectrum(w) for spk, w in wavs.items()}
        names = sorted(spectra)
        for i, a in enumerate(names):  # every pair of voices: same text, different spectrum
            for b in names[i + 1:]:
                assert np.abs(spectra[a] - spectra[b]).mean() > 0.15, (a, b)
    # female variants sit well above male ones
    assert f0["en_v1"] > 1.5 * f0["en_v0"] and f0["en_v7"] > 1.5 * f0["en_v6"]
    assert f0["zh_v1"] > 1.5 * f0["zh_v0"]
    assert 60 < min(f0.values()) and max(f0.values()) < 300


def test_rerun_and_rebuild_keep_user_files(tmp_path):
    out = tmp_path / "c"
    build_corpus(out, seed=0, num_utts=20, workers=1, lm_size=10, progress=False)
    wav = next((out / "wavs").iterdir())
    mtime = wav.stat().st_mtime_ns
    (out / "notes.txt").write_text("mine")
    (out / "wavs" / "my_take.wav").write_bytes(b"mine")
    start = time.perf_counter()
    build_corpus(out, seed=0, num_utts=20, workers=1, lm_size=10, progress=False)
    assert time.perf_counter() - start < 1.0 and wav.stat().st_mtime_ns == mtime
    old = {p.name for p in (out / "wavs").iterdir()}
    build_corpus(out, seed=1, num_utts=22, workers=1, lm_size=10, progress=False)
    new = {p.name for p in (out / "wavs").iterdir()}
    assert (out / "notes.txt").read_text() == "mine" and "my_take.wav" in new
    n_main = len(_rows(out / "train.jsonl")) + len(_rows(out / "val.jsonl"))
    assert len(new) == n_main + 1  # the old build's wavs are gone, only the user's stays
    assert old != new
    stamp = json.loads((out / ".corpus_stamp.json").read_text())
    assert stamp["status"] == "complete" and stamp["settings"]["seed"] == 1


def test_refuses_foreign_folder_and_bad_size(tmp_path):
    (tmp_path / "train.jsonl").write_text("not ours\n")
    with pytest.raises(CorpusError, match="no .corpus_stamp.json"):
        build_corpus(tmp_path, num_utts=20, workers=1, progress=False)
    assert (tmp_path / "train.jsonl").read_text() == "not ours\n"
    with pytest.raises(CorpusError, match="too small"):
        build_corpus(tmp_path / "x", num_utts=5, workers=1, progress=False)


def test_text_helpers():
    assert en_number(73) == "seventy three" and en_number(305) == "three hundred and five"
    assert zh_number(23) == "二十三" and zh_number(10) == "十" and zh_number(40) == "四十"
    assert to_pinyin("这只小猫真好看！你好，世界。") == \
        "zhe4 zhi1 xiao3 mao1 zhen1 hao3 kan4! ni3 hao3, shi4 jie4."
    with pytest.raises(KeyError, match="unknown speaker"):
        render("hello", "en", "en_v99")
    with pytest.raises(ValueError, match="speaks 'zh'"):
        render("hello", "en", "zh_v0")
