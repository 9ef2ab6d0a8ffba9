"""JSONL manifests: one utterance per line with `audio` (relative to the manifest's folder),
`text`, and optional `duration`, `speaker`, `lang`, `utt`. The official VoxCPM fine-tuning manifest
(docs/design.md section 10) reads as it is, into the same Entries: an official line is
`{"audio", "text"}` with optional `duration`, `ref_audio` and `dataset_id`:
- `resolve_audio`: a relative path names a file beside the manifest (our convention) when one is
  there, else in the working directory (the official trainer opens paths from there);
- `official_fields`: `ref_audio` (checked as the audio is: `checked_audio`) as an Entry of its own
  (`Entry.ref_audio`), and `dataset_id` (a whole number >= 0; the official trainer uses it only to
  count audio per dataset in its logs). The latent cache encodes the reference audios
  (`datamodules.latents.reference_entries`) and `datamodules.tts.TTSDataset` packs their items in
  the official layout.

`read_manifest` checks every line once, up front, so that no bad entry can crash a run
mid-epoch: bad entries are counted by kind and shown in one summary with the first offending
lines, then skipped (default) or fatal (`strict=True`). Files stored as floats (or decoded to
floats) are read whole and refused when they hold NaN/inf or an absurd peak; integer PCM cannot.
At scale: the lines are checked by `workers` processes in chunks, and the check's outcome is
cached beside the manifest (`<manifest>.checked.json`), keyed by the manifest's bytes (SHA-256),
the check's settings and each audio file's size and mtime, so the next run parses no line and
reads no header that did not change. The cache is JSON lines: the key first, then one column per
line (each checked line's number, files and their stamps; the bad lines; each Entry field over the
good lines; `_columns`), each packed to parse in one step (`_pack`: numbers as base64 bytes, text
joined or indexed), which a cached read turns straight into Entries; a process that reads the
same unchanged cache file again reuses what it parsed (`_RECENT`). `data.validate=lazy`
(`read_configured`) reads only the lines; the waveform dataset then skips an entry whose audio
turns out bad when it is met, counting it.

An entry's id is its `utt`, or by default its audio path relative to the manifest without the
suffix (`spk1/0001`): a bare file stem would give two speakers' `0001.wav` the same id.
`Entry.stamp` (size, modification and change time) tells an edited file from the one that was read.
"""
from __future__ import annotations

import base64
import gc
import hashlib
import json
import logging
import math
import os
import sys
from array import array
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path

import soundfile as sf

from voxlab.audio import file_stamp, sample_problem
from voxlab.safe_io import atomic_path

log = logging.getLogger(__name__)


FIELDS = ("audio", "text", "duration", "speaker", "lang", "utt")


class ManifestError(ValueError):
    pass


class Entry:
    """One utterance of a manifest. `audio` is a Path, made from the stored text when it is first
    read (a million entries need not build a million Paths up front); otherwise a plain record
    with a dataclass's constructor, equality and repr. Slots: no other attribute can be set."""

    __slots__ = ("utt", "_audio", "text", "duration", "speaker", "lang", "line", "stamp", "ref_audio", "dataset_id")

    def __init__(self, utt: str, audio: "Path | str", text: str, duration: float, speaker: str = "",
                 lang: str = "", line: int = 0, stamp: str = "", ref_audio: "Entry | None" = None,
                 dataset_id: int = 0):
        self.utt, self._audio, self.text, self.duration = utt, audio, text, duration
        self.speaker, self.lang, self.line = speaker, lang, line
        self.stamp = stamp  # file_stamp of the audio when it was checked
        self.ref_audio = ref_audio  # the official manifest's `ref_audio` (`official_fields`)
        self.dataset_id = dataset_id  # the official manifest's `dataset_id`

    @property
    def audio(self) -> Path:
        audio = self._audio
        if audio.__class__ is str:
            audio = self._audio = Path(audio)
        return audio

    @audio.setter
    def audio(self, value: "Path | str") -> None:
        self._audio = value

    def _fields(self) -> tuple:
        return (self.utt, self.audio, self.text, self.duration, self.speaker, self.lang, self.line, self.stamp,
                self.ref_audio, self.dataset_id)

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # mutable, like a dataclass with eq

    def __repr__(self) -> str:
        names = ("utt", "audio", "text", "duration", "speaker", "lang", "line", "stamp", "ref_audio", "dataset_id")
        return "Entry(" + ", ".join(f"{k}={v!r}" for k, v in zip(names, self._fields())) + ")"


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
    (see `_cached_columns`) so the next call parses no line and reads no audio header that did not
    change."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found (run `make data` for the embedded corpus)")
    check = (str(path), float(min_duration), float(max_duration), check_audio)
    with _gc_paused():
        if cache:
            columns = _cached_columns(path, check, workers)
        else:
            columns = _columns(_check_lines(_read_lines(path), check, workers))
        entries, report = _assemble(path, columns)
        del columns
    if sum(report.bad.values()):
        if strict:
            raise ManifestError(report.summary() + "\n(data.strict=true: fix these lines or set data.strict=false to skip them)")
        log.warning(report.summary())
    if not entries:
        raise ManifestError(f"{path}: no usable entries\n{report.summary()}")
    return entries, report


def _assemble(path: Path, columns: dict) -> tuple[list[Entry], ManifestReport]:
    """The entries and the report of a check's columns (`_columns`): the bad lines and, of two
    entries with one `utt`, the later one, reported in line order."""
    lines, bad = columns["line"], columns["bad"]
    report = ManifestReport(path, total=len(lines))
    entries = _entries(columns, lines if not bad else None)
    problems = [tuple(b) for b in bad]
    utts = columns["utt"]
    if len(set(utts)) != len(utts):
        bad_at = {b[0] for b in bad}
        seen: set[str] = set()
        kept = []
        for pos, e in zip((p for p in range(len(lines)) if p not in bad_at), entries):
            if e.utt in seen:
                problems.append((pos, e.line, "duplicate utt", e.utt))
            else:
                seen.add(e.utt)
                kept.append(e)
        entries = kept
    for _, lineno, kind, detail in sorted(problems):
        report.add(lineno, kind, detail)
    return entries, report


VALIDATE = ("full", "lazy")


def read_configured(data, manifest, lazy_ok: bool = True) -> tuple[list[Entry], ManifestReport]:
    """`read_manifest` with a config's `data` section: durations, strict, `validate` (full: every
    audio header read up front; lazy: only the lines, the audio checked when it is met, which
    needs each line's `duration`) and `validate_workers`. `lazy_ok`: False where a path needs
    every audio up front (the latent cache encodes them all). `data.langs` (a list; null: all)
    keeps the entries of those languages only."""
    mode = data.get("validate", "full")
    if mode not in VALIDATE:
        raise ManifestError(f"data.validate={mode!r}: one of {', '.join(VALIDATE)}")
    entries, report = read_manifest(manifest, data.min_duration, data.max_duration, data.strict,
                                    check_audio=mode == "full" or not lazy_ok,
                                    workers=int(data.get("validate_workers", 1)))
    langs = data.get("langs")
    if langs is not None:
        kept = [e for e in entries if e.lang in set(langs)]
        if entries and not kept:
            raise ManifestError(f"{manifest}: data.langs={list(langs)} keeps none of its {len(entries)} entries "
                                f"(languages there: {sorted({e.lang for e in entries})})")
        entries = kept
    return entries, report


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
    try:
        item = json.loads(raw)
        return tuple(str(resolve_audio(manifest, item[k])) for k in ("audio", "ref_audio")
                     if isinstance(item.get(k), str))
    except (json.JSONDecodeError, AttributeError):
        return ()


def _stamps(files: tuple[str, ...]) -> tuple[str, ...]:
    """`file_stamp` (or "absent") of each file: when one changes, its line is checked again."""
    out = []
    for name in files:
        try:
            out.append(file_stamp(name))
        except OSError:
            out.append("absent")
    return tuple(out)


def cache_path(manifest: Path) -> Path:
    return manifest.with_name(manifest.name + ".checked.json")


CACHE_VERSION = 6  # raise when what a check decides, or the cache's layout, changes: older caches are then ignored
ENTRY_COLUMNS = ("utt", "audio", "text", "duration", "speaker", "lang", "stamp")  # + dataset_id, ref


def _cached_columns(path: Path, check: tuple, workers: int) -> dict:
    """The columns (`_columns`) of the last check when the manifest's bytes and the check's
    settings are the same; only lines whose audio files changed (size or mtime) are checked again.
    The cache is ours (`<manifest>.checked.json`, written whole; JSON, not pickle, so a shared data
    folder cannot run code): a folder we may not write to only costs the next run a full check.
    Its first line is the key, each further line one column, so a stale cache is known from its
    first line and a valid one is read without parsing a manifest line."""
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    key = [CACHE_VERSION, digest, list(check)]
    store = cache_path(path)
    columns = _read_cache(store, key)
    changed = _changed(columns) if columns is not None else []
    if columns is not None and not changed:
        return columns
    data = path.read_bytes()
    if (now := hashlib.sha256(data).hexdigest()) != digest:  # edited meanwhile: check the text read now
        key[1], columns = now, None
    lines = _decode_lines(path, data)
    del data
    if columns is None:
        outcomes = _check_lines(lines, check, workers)
    else:
        outcomes = _outcomes(columns)
        fresh = {o[0]: o for o in _check_lines([(outcomes[p][0], lines[outcomes[p][0] - 1]) for p in changed],
                                               check, workers)}
        outcomes = [fresh.get(o[0], o) for o in outcomes]
    columns = _columns(outcomes)
    try:
        with atomic_path(store) as tmp:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(json.dumps({"key": key}) + "\n")
                for name, value in columns.items():
                    f.write(json.dumps([name, _pack(name, value)], ensure_ascii=False) + "\n")
            written = _signature(os.stat(tmp))  # a rename keeps it
        _remember(store, written, key, columns)
    except (OSError, ValueError) as err:  # ValueError: text a UTF-8 file cannot hold (a lone surrogate)
        log.info("%s: the check's outcome is not cached (%s)", path, err)
    return columns


def _read_cache(store: Path, key: list) -> dict | None:
    try:
        with open(store, "rb") as f:
            signature = _signature(os.fstat(f.fileno()))
            recent = _RECENT.get(str(store))
            if recent is not None and recent[:2] == (signature, key):
                return recent[2]
            if json.loads(f.readline(1 << 20)).get("key") != key:  # a longer first line is not a key
                return None
            columns = {name: _unpack(value) for name, value in map(json.loads, f)}
    except (OSError, ValueError, TypeError, AttributeError, KeyError, IndexError):
        return None
    if not _consistent(columns):
        return None
    _remember(store, signature, key, columns)
    return columns


# The cache files last read or written by this process: (file identity, key, columns) by path, so
# that reading a manifest again (train and val from one file; a run's up-front check, then its
# setup) does not parse its cache again while the file is the same (same inode, size and mtime:
# ours are replaced whole, never rewritten in place). The stamps are still checked on each read.
_RECENT: dict[str, tuple] = {}
RECENT = 2


def _signature(st: os.stat_result) -> tuple:
    return st.st_ino, st.st_size, st.st_mtime_ns


def _remember(store: Path, signature: tuple, key: list, columns: dict) -> None:
    _RECENT.pop(str(store), None)
    _RECENT[str(store)] = (signature, key, columns)
    while len(_RECENT) > RECENT:
        del _RECENT[next(iter(_RECENT))]


NUMBERS = {"line": "i", "duration": "d", "dataset_id": "q"}  # columns kept as machine numbers
TEXTS = ("utt", "audio", "text", "speaker", "lang", "stamp")


def _pack(name: str, values):
    """A column in the cache's compact JSON form (`_unpack` reverses it), each parsed in one step,
    not value by value: numbers as the base64 of their little-endian bytes (line numbers that
    follow each other as the first and the count); text with one value as that value and the
    count, with few distinct values as those values and an index (one string per speaker, not one
    per line), else as one string joined by NUL (no path or JSON text holds one; a column that
    does stays a list)."""
    if not values:
        return values
    if name == "line" and values[-1] - values[0] == len(values) - 1 and values == list(range(values[0], values[-1] + 1)):
        return {"from": values[0], "count": len(values)}
    if name in NUMBERS:
        return _pack_numbers(NUMBERS[name], values)
    if name in TEXTS:
        distinct = dict.fromkeys(values)
        if len(distinct) == 1:
            return {"same": values[0], "count": len(values)}
        if 2 * len(distinct) <= len(values):
            index = {v: i for i, v in enumerate(distinct)}
            return {"values": _pack(name, list(distinct)), "index": _pack_numbers("i", [index[v] for v in values])}
        joined = "\0".join(values)
        if joined.count("\0") == len(values) - 1:
            return {"joined": joined}
    return values


def _pack_numbers(code: str, values: list):
    try:
        numbers = array(code, values)
    except (OverflowError, TypeError):  # beyond the type (a dataset_id over 64 bits): a plain list
        return values
    if sys.byteorder == "big":
        numbers.byteswap()
    return {code: base64.b64encode(numbers.tobytes()).decode("ascii")}


def _unpack(value):
    if not isinstance(value, dict):
        return value
    if "joined" in value:
        return value["joined"].split("\0")
    if "same" in value:
        return [value["same"]] * value["count"]
    if "from" in value:
        return list(range(value["from"], value["from"] + value["count"]))
    if "values" in value:
        return list(map(_unpack(value["values"]).__getitem__, _unpack(value["index"])))
    (code, text), = value.items()
    numbers = array(code, base64.b64decode(text, validate=True))
    if sys.byteorder == "big":
        numbers.byteswap()
    return numbers.tolist()


def _consistent(columns: dict) -> bool:
    """Every column there, of the lengths `_columns` gives (a cache cut short or edited is not used)."""
    try:
        n, bad = len(columns["line"]), columns["bad"]
        good = n - len(bad)
        return (all(len(columns[k]) == good for k in ENTRY_COLUMNS)
                and all(columns[k] is None or len(columns[k]) == good for k in ("dataset_id", "ref"))
                and all(columns[k] is None or len(columns[k]) == n for k in ("files", "stamps"))
                and all(len(b) == 4 for b in bad))
    except (KeyError, TypeError):
        return False


def _changed(columns: dict) -> list[int]:
    """The positions of the lines one of whose audio files is not as it was when it was checked."""
    if columns["files"] is None:
        return []
    return [p for p, (files, stamps) in enumerate(zip(columns["files"], columns["stamps"]))
            if list(_stamps(files)) != stamps]


def _columns(outcomes: list[tuple]) -> dict:
    """A check's per-line outcomes as columns, what the cache holds and `_assemble` reads: `line`
    (each checked line's number), `files` and `stamps` (each line's audio files and their stamps;
    None when no line names one, as with data.validate=lazy), `bad` ([position, line, kind, detail]
    of each bad line), then one list per Entry field over the good lines in order (`audio` as text;
    their `line` is read from `line`); `dataset_id` and `ref` (a reference Entry's fields,
    `_ref_row`) are None when no line has one."""
    columns = {"line": [], "files": [], "stamps": [], "bad": [], **{k: [] for k in ENTRY_COLUMNS},
               "dataset_id": [], "ref": []}
    lines, files, stamps, bad = columns["line"], columns["files"], columns["stamps"], columns["bad"]
    fields = [columns[k] for k in ENTRY_COLUMNS]
    ids, refs = columns["dataset_id"], columns["ref"]
    for pos, (lineno, names, marks, outcome) in enumerate(outcomes):
        lines.append(lineno)
        files.append(list(names))
        stamps.append(list(marks))
        if not isinstance(outcome, Entry):
            bad.append([pos, lineno, *outcome])
            continue
        for column, value in zip(fields, _row(outcome)):
            column.append(value)
        ids.append(outcome.dataset_id)
        refs.append(None if outcome.ref_audio is None else _ref_row(outcome.ref_audio))
    same: dict[str, str] = {}  # one string per speaker and language, not one per line
    for k in ("speaker", "lang"):
        columns[k] = [same.setdefault(v, v) for v in columns[k]]
    if not any(files):
        columns["files"] = columns["stamps"] = None
    if not any(ids):
        columns["dataset_id"] = None
    if all(r is None for r in refs):
        columns["ref"] = None
    return columns


def _row(e: Entry) -> tuple:
    return e.utt, str(e._audio), e.text, e.duration, e.speaker, e.lang, e.stamp


def _ref_row(e: Entry) -> list:
    return [*_row(e), e.line, e.dataset_id]


def _entries(columns: dict, lines: list[int] | None = None) -> list[Entry]:
    """The Entries of the good lines of `columns`; `lines`: their line numbers, when known."""
    if lines is None:
        bad_at = {b[0] for b in columns["bad"]}
        lines = [n for p, n in enumerate(columns["line"]) if p not in bad_at]
    utt, audio, text, duration, speaker, lang, stamp = (columns[k] for k in ENTRY_COLUMNS)
    ids = repeat(0) if columns["dataset_id"] is None else columns["dataset_id"]
    refs = repeat(None) if columns["ref"] is None else \
        [None if r is None else Entry(r[0], r[1], r[2], r[3], r[4], r[5], r[7], r[6], None, r[8]) for r in columns["ref"]]
    return list(map(Entry, utt, audio, text, duration, speaker, lang, lines, stamp, refs, ids))


def _outcomes(columns: dict) -> list[tuple]:
    """`columns` back as per-line outcomes (line number, files, stamps, Entry or (kind, detail))."""
    good = iter(_entries(columns))
    bad = {b[0]: (b[2], b[3]) for b in columns["bad"]}
    n = len(columns["line"])
    files, stamps = columns["files"] or [[]] * n, columns["stamps"] or [[]] * n
    return [(lineno, tuple(names), tuple(marks), bad[p] if p in bad else next(good))
            for p, (lineno, names, marks) in enumerate(zip(columns["line"], files, stamps))]


@contextmanager
def _gc_paused():
    """No cyclic garbage collection inside (`read_manifest`; the forked checkers inherit it): a
    million new parsed lines, columns and Entries would otherwise set off full collections of an
    ever larger heap, most of a cached read's time. Collection resumes after it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _read_lines(path: Path) -> list[str]:
    return _decode_lines(path, path.read_bytes())


def _decode_lines(path: Path, data: bytes) -> list[str]:
    try:  # utf-8-sig: a byte-order mark must not become part of the first line's JSON
        return data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ManifestError(f"{path}:{line}: not UTF-8 text (byte 0x{data[err.start]:02x}); "
                            "save the manifest as UTF-8") from None


INTEGER_PCM = ("PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "PCM_32", "ULAW", "ALAW")


def _seconds(value) -> float | None:
    """A manifest's `duration` as seconds, or None when it is not a positive, finite number (a bool,
    a word, NaN, inf, zero or less)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds > 0 else None


class BadAudio(ValueError):
    """An audio file a manifest line names that cannot be trained on: `kind` (the report's category)
    and `detail` (naming the file)."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail = kind, detail


def checked_audio(audio: Path, label: str = "", min_duration: float = 0.0, max_duration: float = float("inf")):
    """The checks every audio file of a line passes, the target and an official `ref_audio` alike
    (`label` prefixes the file in the message): present, readable, not empty, mono, within the
    durations, and float samples finite with a sane peak. Its soundfile info, or BadAudio."""
    name = f"{label}{audio}"
    if not audio.is_file():
        raise BadAudio("missing file", name)
    try:
        info = sf.info(str(audio))
    except Exception as err:  # unreadable header
        raise BadAudio("unreadable audio", f"{name}: {err}") from None
    if info.frames == 0:
        raise BadAudio("empty audio", name)
    if info.channels != 1:
        raise BadAudio("several channels", f"{name}: {info.channels} channels")
    duration = info.frames / info.samplerate
    if duration > max_duration:
        raise BadAudio("too long", f"{name}: {duration:.2f} s > {max_duration} s (data.max_duration)")
    if duration < min_duration:
        raise BadAudio("too short", f"{name}: {duration:.2f} s < {min_duration} s")
    if info.subtype not in INTEGER_PCM:  # floats may hold NaN, inf or any peak
        problem = sample_problem(sf.read(str(audio), dtype="float32")[0])
        if problem:
            raise BadAudio("bad samples", f"{name}: {problem}")
    return info


def resolve_audio(manifest: Path, value: str) -> Path:
    beside = (manifest.parent / value).resolve()
    if beside.is_file() or Path(value).is_absolute():
        return beside
    in_cwd = Path(value).resolve()
    return in_cwd if in_cwd.is_file() else beside


def _reference(manifest: Path, value, check_audio: bool, max_duration: float) -> Entry:
    if not isinstance(value, str) or not value:
        raise BadAudio("not a string", f"`ref_audio`: {value!r}")
    path = resolve_audio(manifest, value)
    if not check_audio:
        return Entry(f"{value} (ref_audio)", path, "", 0.0)
    # as the target is checked: NaN/inf samples, and longer than data.max_duration (it is packed into
    # the same sequence as the target, so an hour-long reference would take the batch's memory)
    info = checked_audio(path, "ref_audio ", max_duration=max_duration)
    return Entry(f"{value} (ref_audio)", path, "", info.frames / info.samplerate, stamp=file_stamp(path))


def official_fields(item: dict, manifest: Path, check_audio: bool = True,
                    max_duration: float = float("inf")) -> tuple[Entry | None, int]:
    """(the reference audio as an Entry or None, dataset_id) of one manifest line; BadAudio (its
    `kind` the report's category) if wrong."""
    ref = item.get("ref_audio")
    dataset_id = item.get("dataset_id", 0)
    if isinstance(dataset_id, bool) or not isinstance(dataset_id, int) or dataset_id < 0:
        raise BadAudio("bad dataset_id", f"`dataset_id` must be a whole number >= 0, got {dataset_id!r}")
    return (None if ref is None else _reference(manifest, ref, check_audio, max_duration)), dataset_id


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
    audio = resolve_audio(path, item["audio"])
    duration = item.get("duration")
    if check_audio:
        try:
            info = checked_audio(audio, "", min_duration, max_duration)
        except BadAudio as err:
            report.add(lineno, err.kind, err.detail)
            return None
        duration = info.frames / info.samplerate
        stamp = file_stamp(audio)
    else:
        stamp = ""
    if duration is None:
        report.add(lineno, "missing field", "`duration` is required when audio is not checked")
        return None
    if not check_audio:  # the line's own number: a string, NaN, inf or <= 0 would break batching later
        seconds = _seconds(duration)
        if seconds is None:
            report.add(lineno, "bad duration", f"`duration`: {duration!r} is not a positive, finite number of seconds")
            return None
        duration = seconds
    duration = float(duration)
    if duration > max_duration:
        report.add(lineno, "too long", f"{audio}: {duration:.2f} s > {max_duration} s")
        return None
    if duration < min_duration:
        report.add(lineno, "too short", f"{audio}: {duration:.2f} s < {min_duration} s")
        return None
    try:
        ref_audio, dataset_id = official_fields(item, path, check_audio, max_duration)
    except BadAudio as err:
        report.add(lineno, err.kind, err.detail)
        return None
    utt = str(item.get("utt") or Path(item["audio"]).with_suffix("").as_posix())
    return Entry(utt, audio, text, duration, str(item.get("speaker", "")), str(item.get("lang", "")), lineno,
                 stamp, ref_audio=ref_audio, dataset_id=dataset_id)
