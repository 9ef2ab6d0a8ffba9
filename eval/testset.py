"""Seed-TTS-Eval test-set reader: `meta.lst` lines `utt|prompt_text|prompt_wav|target_text[|gt_wav]`.

Paths are relative to the meta file. Every line is validated (field count, unique safe utt names,
non-empty texts, audio files present) and all problems are reported at once in one error, so a
broken test set is fixed in one pass instead of line by line.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MAX_LISTED = 20  # problems listed in one error before "... and N more"


class TestSetError(ValueError):
    """A test set that cannot be used as given; the message lists every problem found."""

    __test__ = False  # not a pytest test class, despite the name


@dataclass(frozen=True)
class TestItem:
    __test__ = False  # not a pytest test class, despite the name

    utt: str
    prompt_text: str
    prompt_wav: Path
    target_text: str
    gt_wav: Path | None = None
    line_no: int = 0


def summarize(problems: list[str], limit: int = MAX_LISTED) -> str:
    shown = "\n".join(f"  {p}" for p in problems[:limit])
    more = f"\n  ... and {len(problems) - limit} more" if len(problems) > limit else ""
    return shown + more


def resolve_meta(path: str | Path) -> Path:
    """A meta file, or a folder holding `meta.lst`."""
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        meta = path / "meta.lst"
        if meta.is_file():
            return meta
        others = sorted(p.name for p in path.glob("*.lst"))
        hint = f" (it has: {', '.join(others)}; pass one of them)" if others else ""
        raise TestSetError(f"{path}: no meta.lst in this folder{hint}")
    raise TestSetError(f"{path}: test set not found (expected a meta.lst file or a folder holding one)")


def testset_name(path: str | Path) -> str:
    """`.../en/meta.lst` -> `en`; `.../zh/hardcase.lst` -> `zh_hardcase`."""
    meta = resolve_meta(path)
    return meta.parent.name if meta.name == "meta.lst" else f"{meta.parent.name}_{meta.stem}"


NAME_MAX = 255  # bytes in one file name on common file systems (ext4, xfs, btrfs, tmpfs, APFS)
# the longest name generation writes for an utterance: save_audio's temporary `.<utt>.wav.<pid>.<8 hex>.tmp`
# (a pid of up to 7 digits); `<utt>.gen.json` and `<utt>.wav` are shorter
MAX_UTT_BYTES = NAME_MAX - len(".") - len(".wav.1234567.abcdef12.tmp")


def utt_problem(utt: str) -> str | None:
    """Why `utt` cannot name the files generated for it (checked before anything is generated), or None."""
    if not utt:
        return "empty utt"
    shown = utt if len(utt) <= 40 else f"{utt[:40]}..."
    if "/" in utt or "\\" in utt or utt in (".", "..") or any(ord(c) < 32 for c in utt):
        return f"utt {shown!r} is not a plain file name"
    size = len(utt.encode("utf-8"))
    if size > MAX_UTT_BYTES:
        return (f"utt {shown!r} is {len(utt)} characters ({size} bytes in UTF-8): the files generated for it "
                f"(<utt>.wav, <utt>.gen.json, a temporary name) would pass the file system's {NAME_MAX}-byte "
                f"name limit; at most {MAX_UTT_BYTES} bytes")
    return None


def _parse_line(raw: str, line_no: int, root: Path, problems: list[str]) -> TestItem | None:
    fields = [f.strip() for f in raw.split("|")]
    if len(fields) not in (4, 5):
        problems.append(f"line {line_no}: {len(fields)} '|'-separated fields, expected 4 or 5 "
                        "(utt|prompt_text|prompt_wav|target_text[|gt_wav])")
        return None
    utt, prompt_text, prompt_wav, target_text = fields[:4]
    gt = fields[4] if len(fields) == 5 and fields[4] else None
    bad = [problem] if (problem := utt_problem(utt)) else []
    if not prompt_text:
        bad.append("empty prompt_text")
    if not target_text:
        bad.append("empty target_text")
    prompt_path = root / prompt_wav if prompt_wav else None
    if prompt_path is None:
        bad.append("empty prompt_wav")
    elif not prompt_path.is_file():
        bad.append(f"prompt_wav not found: {prompt_path}")
    gt_path = root / gt if gt else None
    if gt_path is not None and not gt_path.is_file():
        bad.append(f"gt_wav not found: {gt_path}")
    if bad:
        problems.append(f"line {line_no} ({(utt[:40] + '...' if len(utt) > 40 else utt) or '?'}): " + "; ".join(bad))
        return None
    return TestItem(utt, prompt_text, prompt_path, target_text, gt_path, line_no)


def read_testset(path: str | Path, limit: int | None = None,
                 utts: list[str] | None = None) -> list[TestItem]:
    """Read and validate every line of the test set, then select `utts` (in file order) and the
    first `limit` of them. Raises TestSetError listing all invalid lines or unknown utts."""
    meta = resolve_meta(path)
    root = meta.parent
    try:
        text = meta.read_text(encoding="utf-8-sig")  # a byte-order mark is not part of the first utt id
    except UnicodeDecodeError as err:
        raise TestSetError(f"{meta}: not UTF-8 text ({err})") from None
    problems: list[str] = []
    items: list[TestItem] = []
    seen: dict[str, int] = {}
    for line_no, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        item = _parse_line(raw, line_no, root, problems)
        if item is None:
            continue
        if item.utt in seen:
            problems.append(f"line {line_no}: utt {item.utt!r} already used on line {seen[item.utt]}")
            continue
        seen[item.utt] = line_no
        items.append(item)
    n_lines = len(items) + len(problems)
    if problems:
        raise TestSetError(f"{meta}: {len(problems)} of {n_lines} lines invalid:\n{summarize(problems)}")
    if not items:
        raise TestSetError(f"{meta}: no utterances")
    if utts:
        unknown = [u for u in utts if u not in seen]
        if unknown:
            raise TestSetError(f"{meta}: {len(unknown)} requested utts not in the test set:\n"
                               + summarize(unknown))
        wanted = set(utts)
        items = [it for it in items if it.utt in wanted]
    if limit is not None:
        if limit < 1:
            raise TestSetError(f"limit must be >= 1, got {limit}")
        items = items[:limit]
    return items
