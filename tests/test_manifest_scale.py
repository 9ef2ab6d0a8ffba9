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
    assert f":{wav.stat().st_mtime_ns}:" in next(e for e in entries if e.audio == wav).stamp

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


def test_data_langs_keeps_the_named_languages_and_refuses_to_keep_nothing(tmp_path):
    rows = [{"audio": "a.wav", "text": "hi", "duration": 1.0, "lang": lang, "utt": f"u{i}"}
            for i, lang in enumerate(["en", "zh", "en"])]
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = OmegaConf.create({"min_duration": 0.0, "max_duration": 20.0, "strict": False, "validate": "lazy",
                             "validate_workers": 1, "langs": None})
    assert [e.utt for e in read_configured(data, path)[0]] == ["u0", "u1", "u2"]
    assert [e.utt for e in read_configured(OmegaConf.merge(data, {"langs": ["en"]}), path)[0]] == ["u0", "u2"]
    with pytest.raises(manifest_module.ManifestError, match=r"data.langs=\['fr'\] keeps none.*\['en', 'zh'\]"):
        read_configured(OmegaConf.merge(data, {"langs": ["fr"]}), path)


def _fields(e):
    """Every field of an entry, its reference's too, and the types a cached read must keep."""
    ref = None if e.ref_audio is None else _fields(e.ref_audio)
    return (e.utt, e.audio, type(e.audio), e.text, e.duration, type(e.duration), e.speaker, e.lang, e.line,
            e.stamp, e.dataset_id, ref)


def _everything(entries, report):
    return [_fields(e) for e in entries], (report.total, dict(report.bad), report.examples, report.summary())


def _direct(path, check_audio):
    """The entries and the report straight from the check's Entries, as `read_manifest` made them
    before it had columns: the reference the column and cache round trips are held to."""
    outcomes = manifest_module._check_lines(manifest_module._read_lines(path),
                                            (str(path), 0.0, float("inf"), check_audio), 1)
    report, entries, seen = manifest_module.ManifestReport(path), [], set()
    for lineno, _, _, outcome in outcomes:
        report.total += 1
        if not isinstance(outcome, manifest_module.Entry):
            report.add(lineno, *outcome)
        elif outcome.utt in seen:
            report.add(lineno, "duplicate utt", outcome.utt)
        else:
            seen.add(outcome.utt)
            entries.append(outcome)
    return entries, report


@pytest.fixture
def mixed(corpus):
    """`corpus` plus a duplicate utt, an empty line, official fields (ref_audio, dataset_id) and a bad
    reference, so that every column of the cache is filled."""
    more = [json.dumps({"audio": "wavs/u3.wav", "text": "the same id", "utt": "wavs/u3", "duration": 0.25}), "",
            json.dumps({"audio": "wavs/u4.wav", "text": "with a reference", "ref_audio": "wavs/u1.wav",
                        "dataset_id": 2, "speaker": "s1", "lang": "en", "duration": 0.3, "utt": "ref1"}),
            json.dumps({"audio": "wavs/u5.wav", "text": "bad reference", "ref_audio": "wavs/none.wav",
                        "duration": 0.3, "utt": "ref2"})]
    corpus.write_text(corpus.read_text() + "\n".join(more) + "\n")
    return corpus


@pytest.mark.parametrize("check_audio", [True, False])
def test_a_cached_read_gives_what_a_check_gives_field_for_field(mixed, monkeypatch, check_audio):
    direct = _everything(*_direct(mixed, check_audio))
    checked = _everything(*read_manifest(mixed, check_audio=check_audio, cache=False))
    assert not cache_path(mixed).exists() and checked == direct
    first = _everything(*read_manifest(mixed, check_audio=check_audio))  # checks, writes the cache
    calls = _count_headers(monkeypatch)
    monkeypatch.setattr(manifest_module, "_parse_line", lambda *a: pytest.fail("a cached read parsed a line"))
    manifest_module._RECENT.clear()  # as in a new process: the cache file is read
    cached = _everything(*read_manifest(mixed, check_audio=check_audio))
    monkeypatch.setattr(manifest_module, "_unpack", lambda *a: pytest.fail("the same cache file parsed again"))
    again = _everything(*read_manifest(mixed, check_audio=check_audio))  # this process's last read of it
    assert checked == first == cached == again and calls == []
    entries, report = read_manifest(mixed, check_audio=check_audio)
    assert report.bad["duplicate utt"] == 1 and [e.utt for e in entries].count("wavs/u3") == 1
    assert any(e.ref_audio is not None and e.dataset_id == 2 for e in entries)
    assert report.total == 14 and ("missing file" in report.bad) == check_audio
    monkeypatch.undo()

    wav = mixed.parent / "wavs" / "u1.wav"  # a touched reference: its line and u1's are checked again
    os.utime(wav, ns=(wav.stat().st_atime_ns, wav.stat().st_mtime_ns + 10**9))
    assert _everything(*read_manifest(mixed, check_audio=check_audio)) == _everything(*_direct(mixed, check_audio))


def test_a_stale_or_damaged_cache_is_checked_again(mixed):
    expected = _everything(*read_manifest(mixed, cache=False))
    store = cache_path(mixed)
    for damaged in ('{"key": [2, "old"], "outcomes": []}',  # an older layout
                    None,  # cut short: a column missing
                    "not json at all\n"):
        read_manifest(mixed)
        manifest_module._RECENT.clear()
        if damaged is None:
            store.write_text("\n".join(store.read_text().splitlines()[:-1]) + "\n")
        else:
            store.write_text(damaged)
        assert _everything(*read_manifest(mixed)) == expected
        assert store.read_text().startswith('{"key": [')  # written again, whole
        assert _everything(*read_manifest(mixed)) == expected


def test_entry_is_a_slotted_record_with_a_path():
    import pickle

    e = manifest_module.Entry("u1", "wavs/u1.wav", "hello", 1.5, line=3)
    assert e.audio == manifest_module.Path("wavs/u1.wav") and isinstance(e.audio, manifest_module.Path)
    assert e == manifest_module.Entry("u1", manifest_module.Path("wavs/u1.wav"), "hello", 1.5, line=3)
    assert e != manifest_module.Entry("u1", "wavs/u1.wav", "hello", 1.5, line=4)
    assert pickle.loads(pickle.dumps(e)) == e and "audio=PosixPath('wavs/u1.wav')" in repr(e)
    with pytest.raises(AttributeError):
        e.extra = 1  # slots: a typo cannot add a field
    with pytest.raises(TypeError):
        hash(e)


def test_a_manifest_of_bad_lines_only_is_cached_and_still_refused(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text("{not json\n" + json.dumps({"audio": "x.wav", "text": ""}) + "\n")
    for _ in range(2):  # checked, then read from the cache: the same refusal
        with pytest.raises(manifest_module.ManifestError, match="no usable entries") as err:
            read_manifest(path)
        assert "invalid JSON: 1" in str(err.value) and "empty text: 1" in str(err.value)
    assert cache_path(path).is_file()


def test_the_cache_packs_its_columns(mixed):
    """Numbers as bytes, few distinct texts as an index, other texts joined: and back unchanged, a
    text holding NUL included."""
    columns = manifest_module._columns(manifest_module._check_lines(manifest_module._read_lines(mixed),
                                                                    (str(mixed), 0.0, 1e9, True), 1))
    for name, value in columns.items():
        packed = json.loads(json.dumps(manifest_module._pack(name, value)))
        assert manifest_module._unpack(packed) == value, name
    assert "i" in manifest_module._pack("line", columns["line"])  # not consecutive: an empty line
    assert manifest_module._pack("line", [3, 4, 5]) == {"from": 3, "count": 3}
    assert "joined" in manifest_module._pack("utt", columns["utt"])
    assert "index" in manifest_module._pack("lang", ["en"] * 5 + ["zh"])
    assert manifest_module._pack("stamp", [""] * 4) == {"same": "", "count": 4}
    assert manifest_module._pack("text", ["a\0b", "c"]) == ["a\0b", "c"]
    assert manifest_module._pack("dataset_id", [2 ** 70, 0]) == [2 ** 70, 0]


def test_a_lazy_line_whose_duration_is_not_seconds_is_a_bad_line_naming_file_and_line(corpus):
    """data.validate=lazy trusts each line's `duration`: a word, NaN (JSON's NaN or the string),
    inf, zero, a negative, a bool, a list is a bad line `<manifest>:<line>: bad duration`, never a
    ValueError or a dataloader traceback later; a numeric string is seconds."""
    rows = corpus.read_text().splitlines()
    bad = ['"abc"', "NaN", '"nan"', "Infinity", '"1e400"', "0", "-1.5", "true", "[2]", '{"s": 2}', '""']
    for i, value in enumerate(bad):
        rows.append(f'{{"audio": "wavs/u1.wav", "text": "bad {i}", "duration": {value}}}')
    rows.append('{"audio": "wavs/u1.wav", "text": "seconds as text", "duration": "0.25", "utt": "as_text"}')
    corpus.write_text("\n".join(rows) + "\n")
    data = OmegaConf.create({"min_duration": 0.0, "max_duration": 20.0, "strict": False, "validate": "lazy",
                             "validate_workers": 1})
    for _ in range(2):  # checked, then from the cache beside the manifest: the same answer
        entries, report = read_configured(data, corpus)
        assert report.bad["bad duration"] == len(bad) and all(e.duration > 0 for e in entries)
        assert next(e for e in entries if e.utt == "as_text").duration == 0.25
        assert f"{corpus}:12: bad duration: `duration`: 'abc' is not a positive, finite number" in report.summary()
    with pytest.raises(manifest_module.ManifestError, match=rf"{corpus}:13: bad duration: `duration`: nan"):
        read_configured(OmegaConf.merge(data, {"strict": True}), corpus)
