"""JSONL manifests: one utterance per line with `audio` (relative to the manifest's folder),
`text`, and optional `duration`, `speaker`, `lang`, `utt`. The official VoxCPM fine-tuning manifest
(`audio` relative to the working directory, optional `ref_audio`, `dataset_id`) reads as it is
(datamodules/official_manifest.py).

`read_manifest` checks every line once, up front, so that no bad entry can crash a run
mid-epoch: bad entries are counted by kind and shown in one summary with the first offending
lines, then skipped (default) or fatal (`strict=True`). Files stored as floats (or decoded to
floats) are read whole and refused when they hold NaN/inf or an absurd peak; integer PCM cannot.
At scale: the lines are checked by `workers` processes in chunks, and each line's outcome is
cached beside the manifest (`<manifest>.checked.json`), keyed by the manifest's text, the check's
settings and each audio file's size and mtime, so the next run reads no header that did not
change. `data.validate=lazy` (`read_configured`) reads only the lines; the waveform dataset then
skips an entry whose audio turns out bad when it is met, counting it.

An entry's id is its `utt`, or by default its audio path relative to the manifest without the
suffix (`spk1/0001`): a bare file stem would give two speakers' `0001.wav` the same id.
`Entry.stamp` (size and modification time) tells an edited file from the one that was read.
"""
from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf

from voxlab.audio import sample_problem
from voxlab.safe_io import atomic_path

log = logging.getLogger(__name__)


FIELDS = ("audio", "text", "duration", "speaker", "lang", "utt")


class ManifestError(ValueError):
    pass


@dataclass
class Entry:
    utt: str
    audio: Path
    text: str
    duration: float
    speaker: str = ""
    lang: str = ""
    line: int = 0
    stamp: str = ""  # "<bytes>:<mtime ns>" of the audio when it was checked
    ref_audio: "Entry | None" = None  # the official manifest's `ref_audio` (datamodules/official_manifest.py)
    dataset_id: int = 0               # the official manifest's `dataset_id`


@dataclass
class ManifestReport:
    path: Path
    total: int = 0
    bad: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def add(self, line: int, kind: str, detail: str) -> None:
        self.bad[kind] += 1
        if len(self.examples) < 5:
            self.examples.append(f"{self.path}:{line}: {kind}: {detail}")

    def summary(self) -> str:
        n_bad = sum(self.bad.values())
        head = f"{self.path}: {self.total} entries, {self.total - n_bad} usable, {n_bad} bad"
        if not n_bad:
            return head
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(self.bad.items()))
        return "\n  ".join([f"{head} ({kinds}); first offending lines:"] + self.examples)


def read_manifest(path: str | Path, min_duration: float = 0.0, max_duration: float = float("inf"),
                  strict: bool = False, check_audio: bool = True, workers: int = 1,
                  cache: bool = True) -> tuple[list[Entry], ManifestReport]:
    """Parse and validate a manifest. With `check_audio`, each file's header is read (cheap):
    missing, unreadable, empty, multi-channel or over-long audio are bad entries. `workers`
    processes check the lines in parallel; with `cache`, the outcome is kept beside the manifest
    (see `_cached_outcomes`) so the next call reads no audio header that did not change."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found (run `make data` for the embedded corpus)")
    lines = _read_lines(path)
    check = (str(path), float(min_duration), float(max_duration), check_audio)
    outcomes = _cached_outcomes(path, lines, check, workers) if cache else _check_lines(lines, check, workers)
    report = ManifestReport(path)
    entries: list[Entry] = []
    seen: set[str] = set()
    for lineno, _, _, outcome in outcomes:
        report.total += 1
        if not isinstance(outcome, Entry):
            report.add(lineno, *outcome)
        elif outcome.utt in seen:
            report.add(lineno, "duplicate utt", outcome.utt)
        else:
            seen.add(outcome.utt)
            entries.append(outcome)
    if sum(report.bad.values()):
        if strict:
            raise ManifestError(report.summary() + "\n(data.strict=true: fix these lines or set data.strict=false to skip them)")
        log.warning(report.summary())
    if not entries:
        raise ManifestError(f"{path}: no usable entries\n{report.summary()}")
    return entries, report


VALIDATE = ("full", "lazy")


def read_configured(data, manifest, lazy_ok: bool = True) -> tuple[list[Entry], ManifestReport]:
    """`read_manifest` with a config's `data` section: durations, strict, `validate` (full: every
    audio header read up front; lazy: only the lines, the audio checked when it is met, which
    needs each line's `duration`) and `validate_workers`. `lazy_ok`: False where a path needs
    every audio up front (the latent cache encodes them all)."""
    mode = data.get("validate", "full")
    if mode not in VALIDATE:
        raise ManifestError(f"data.validate={mode!r}: one of {', '.join(VALIDATE)}")
    return read_manifest(manifest, data.min_duration, data.max_duration, data.strict,
                         check_audio=mode == "full" or not lazy_ok, workers=int(data.get("validate_workers", 1)))


class _LineOutcome:
    """What `_parse_line` reports about one line: (kind, detail) of its first problem, if any."""

    def __init__(self):
        self.bad: tuple[str, str] | None = None

    def add(self, lineno: int, kind: str, detail: str) -> None:
        self.bad = self.bad or (kind, detail)


def _check_chunk(chunk: list[tuple[int, str]], check: tuple) -> list[tuple]:
    """(line number, its audio files, their stamps, Entry or (kind, detail)) of each line of `chunk`."""
    path, min_duration, max_duration, check_audio = check
    path = Path(path)
    out = []
    for lineno, raw in chunk:
        files = _files(path, raw) if check_audio else ()
        stamps = _stamps(files)  # before the check: a file changed during it is checked again next time
        seen = _LineOutcome()
        entry = _parse_line(raw, lineno, path, seen, min_duration, max_duration, check_audio)
        out.append((lineno, files, stamps, entry or seen.bad))
    return out


def _check_lines(numbered: list[tuple[int, str]] | list[str], check: tuple, workers: int) -> list[tuple]:
    if numbered and isinstance(numbered[0], str):
        numbered = [(n, raw) for n, raw in enumerate(numbered, start=1) if raw.strip()]
    if workers <= 1 or len(numbered) < 2 * CHUNK:
        return _check_chunk(numbered, check)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    chunks = [numbered[i:i + CHUNK] for i in range(0, len(numbered), CHUNK)]
    # fork: the workers only parse JSON and read audio headers (no threads of ours to inherit)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        return [o for part in pool.map(_check_chunk, chunks, [check] * len(chunks)) for o in part]


CHUNK = 2000  # lines per task of a parallel check


def _files(manifest: Path, raw: str) -> tuple[str, ...]:
    """The audio files a line names (resolved once: a later run only stats them)."""
    from datamodules.official_manifest import resolve_audio

    try:
        item = json.loads(raw)
        return tuple(str(resolve_audio(manifest, item[k])) for k in ("audio", "ref_audio")
                     if isinstance(item.get(k), str))
    except (json.JSONDecodeError, AttributeError):
        return ()


def _stamps(files: tuple[str, ...]) -> tuple[str, ...]:
    """"<bytes>:<mtime ns>" (or "absent") of each file: when one changes, its line is checked again."""
    out = []
    for name in files:
        try:
            st = os.stat(name)
            out.append(f"{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            out.append("absent")
    return tuple(out)


def cache_path(manifest: Path) -> Path:
    return manifest.with_name(manifest.name + ".checked.json")


CACHE_VERSION = 2  # raise when what a check decides changes: older caches are then ignored


def _cached_outcomes(path: Path, lines: list[str], check: tuple, workers: int) -> list[tuple]:
    """The per-line outcomes of the last check when the manifest's text and the check's settings
    are the same; only lines whose audio files changed (size or mtime) are checked again. The
    cache is ours (`<manifest>.checked.json`, written whole; JSON, not pickle, so a shared data
    folder cannot run code): a folder we may not write to only costs the next run a full check."""
    import hashlib

    key = [CACHE_VERSION, hashlib.sha256("\n".join(lines).encode()).hexdigest(), list(check)]
    store = cache_path(path)
    try:
        cached = json.loads(store.read_text(encoding="utf-8"))
        outcomes = [(n, tuple(files), tuple(stamps), _decode(o)) for n, files, stamps, o in cached["outcomes"]] \
            if cached["key"] == key else None
    except (OSError, ValueError, KeyError, TypeError):
        outcomes = None
    if outcomes is None:
        outcomes = _check_lines(lines, check, workers)
    else:
        changed = [(n, lines[n - 1]) for n, files, stamps, _ in outcomes if _stamps(files) != stamps]
        if not changed:
            return outcomes
        fresh = {o[0]: o for o in _check_lines(changed, check, workers)}
        outcomes = [fresh.get(o[0], o) for o in outcomes]
    try:
        with atomic_path(store) as tmp:
            tmp.write_text(json.dumps({"key": key, "outcomes": [(n, f, st, _encode(o)) for n, f, st, o in outcomes]},
                                      ensure_ascii=False), encoding="utf-8")
    except OSError as err:
        log.info("%s: the check's outcome is not cached (%s)", path, err)
    return outcomes


def _encode(outcome):
    """An Entry as a dict (paths as text), a bad line's (kind, detail) as a list."""
    if not isinstance(outcome, Entry):
        return list(outcome)
    d = dict(vars(outcome), audio=str(outcome.audio))
    d["ref_audio"] = None if outcome.ref_audio is None else _encode(outcome.ref_audio)
    return d


def _decode(value):
    if isinstance(value, list):
        return tuple(value)
    ref = value.pop("ref_audio")
    return Entry(**dict(value, audio=Path(value["audio"]), ref_audio=None if ref is None else _decode(ref)))


def _read_lines(path: Path) -> list[str]:
    data = path.read_bytes()
    try:  # utf-8-sig: a byte-order mark must not become part of the first line's JSON
        return data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ManifestError(f"{path}:{line}: not UTF-8 text (byte 0x{data[err.start]:02x}); "
                            "save the manifest as UTF-8") from None


INTEGER_PCM = ("PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "PCM_32", "ULAW", "ALAW")


def _parse_line(raw, lineno, path, report, min_duration, max_duration, check_audio) -> Entry | None:
    try:
        item = json.loads(raw)
    except json.JSONDecodeError as err:
        report.add(lineno, "invalid JSON", str(err))
        return None
    if not isinstance(item, dict) or "audio" not in item:
        report.add(lineno, "missing field", "`audio` is required")
        return None
    nulls = [k for k in FIELDS if k in item and item[k] is None]
    if nulls:  # str(None) would train on the word "None"
        report.add(lineno, "null field", ", ".join(f"`{k}`" for k in nulls) + " is null")
        return None
    wrong = [k for k in ("audio", "text") if k in item and not isinstance(item[k], str)]
    if wrong:
        report.add(lineno, "not a string", ", ".join(f"`{k}`: {item[k]!r}" for k in wrong))
        return None
    text = item.get("text", "").strip()
    if not text:
        report.add(lineno, "empty text", str(item.get("audio")))
        return None
    from datamodules.official_manifest import BadField, official_fields, resolve_audio  # the official format

    audio = resolve_audio(path, item["audio"])
    duration = item.get("duration")
    if check_audio:
        if not audio.is_file():
            report.add(lineno, "missing file", str(audio))
            return None
        try:
            info = sf.info(str(audio))
        except Exception as err:  # unreadable header
            report.add(lineno, "unreadable audio", f"{audio}: {err}")
            return None
        if info.frames == 0:
            report.add(lineno, "empty audio", str(audio))
            return None
        if info.channels != 1:
            report.add(lineno, "several channels", f"{audio}: {info.channels} channels")
            return None
        duration = info.frames / info.samplerate
        stat = audio.stat()
        stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
    else:
        stamp = ""
    if duration is None:
        report.add(lineno, "missing field", "`duration` is required when audio is not checked")
        return None
    duration = float(duration)
    if duration > max_duration:
        report.add(lineno, "too long", f"{audio}: {duration:.2f} s > {max_duration} s")
        return None
    if duration < min_duration:
        report.add(lineno, "too short", f"{audio}: {duration:.2f} s < {min_duration} s")
        return None
    if check_audio and info.subtype not in INTEGER_PCM:  # floats may hold NaN, inf or any peak
        problem = sample_problem(sf.read(str(audio), dtype="float32")[0])
        if problem:
            report.add(lineno, "bad samples", f"{audio}: {problem}")
            return None
    try:
        ref_audio, dataset_id = official_fields(item, path, check_audio)
    except BadField as err:
        report.add(lineno, err.kind, err.detail)
        return None
    utt = str(item.get("utt") or Path(item["audio"]).with_suffix("").as_posix())
    return Entry(utt, audio, text, duration, str(item.get("speaker", "")), str(item.get("lang", "")), lineno,
                 stamp, ref_audio=ref_audio, dataset_id=dataset_id)
