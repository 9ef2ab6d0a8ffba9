"""JSONL manifests: one utterance per line with `audio` (relative to the manifest's folder),
`text`, and optional `duration`, `speaker`, `lang`, `utt`. The official VoxCPM fine-tuning manifest
(`audio` relative to the working directory, optional `ref_audio`, `dataset_id`) reads as it is
(datamodules/official_manifest.py).

`read_manifest` checks every line once, up front, so that no bad entry can crash a run
mid-epoch: bad entries are counted by kind and shown in one summary with the first offending
lines, then skipped (default) or fatal (`strict=True`). Files stored as floats (or decoded to
floats) are read whole and refused when they hold NaN/inf or an absurd peak; integer PCM cannot.

An entry's id is its `utt`, or by default its audio path relative to the manifest without the
suffix (`spk1/0001`): a bare file stem would give two speakers' `0001.wav` the same id.
`Entry.stamp` (size and modification time) tells an edited file from the one that was read.
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf

from voxlab.audio import sample_problem

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
                  strict: bool = False, check_audio: bool = True) -> tuple[list[Entry], ManifestReport]:
    """Parse and validate a manifest. With `check_audio`, each file's header is read (cheap):
    missing, unreadable, empty, multi-channel or over-long audio are bad entries."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found (run `make data` for the embedded corpus)")
    report = ManifestReport(path)
    entries: list[Entry] = []
    seen: set[str] = set()
    for lineno, raw in enumerate(_read_lines(path), start=1):
        if not raw.strip():
            continue
        report.total += 1
        entry = _parse_line(raw, lineno, path, report, min_duration, max_duration, check_audio)
        if entry is None:
            continue
        if entry.utt in seen:
            report.add(lineno, "duplicate utt", entry.utt)
            continue
        seen.add(entry.utt)
        entries.append(entry)
    if sum(report.bad.values()):
        if strict:
            raise ManifestError(report.summary() + "\n(data.strict=true: fix these lines or set data.strict=false to skip them)")
        log.warning(report.summary())
    if not entries:
        raise ManifestError(f"{path}: no usable entries\n{report.summary()}")
    return entries, report


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
