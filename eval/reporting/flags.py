"""The report's failure flags (eval/flags.py): counts per evaluation, and the flagged utterances
with their audio, so that a WER is read beside what drives it.

Each entry's newest evaluation of each test set is used (as the tables do); evaluations written
before the flags existed (no `failures` in metrics.json) are left out.
"""
from __future__ import annotations

import csv
import html
import shutil
from pathlib import Path

from eval.flags import FLAGS
from eval.reporting.results import read_result

HEADERS = ["run", "test set", "step", "utts", *FLAGS, "any"]
MISSING = "—"


def _newest(entries):
    for e in entries:
        for name, r in sorted(e.latest().items()):
            if isinstance(r.metrics.get("failures"), dict):
                yield e, name, r


def flag_rows(entries) -> list[list[str]]:
    """One row per evaluation: each flag's count, "(of k)" when only k utterances could be decided."""
    rows = []
    for e, name, r in _newest(entries):
        f = r.metrics["failures"]
        n, decided = f.get("n_utts", 0), f.get("decided", {})
        cells = [f"{f.get(x, 0)}" + ("" if decided.get(x, n) == n else f" (of {decided.get(x)})") for x in FLAGS]
        rows.append([e.label, name, MISSING if r.step is None else str(r.step), str(n), *cells, str(f.get("any", 0))])
    return rows


def _folders(r):
    """(result, seed or "") per folder holding a per_utt.csv: the evaluation, or each seed's (several seeds)."""
    per_seed = r.metrics.get("per_seed") or {}
    if not per_seed:
        return [(r, "")]
    return [(read_result(r.path / p["path"]), s) for s, p in per_seed.items()
            if (r.path / p["path"] / "metrics.json").is_file()]


def flagged_utterances(entries, per_result: int = 20) -> list[dict]:
    """Up to `per_result` flagged utterances of each evaluation (per_utt.csv's `flags`; of each seed's
    folder for several seeds), with the wav."""
    out = []
    for e, name, top in _newest(entries):
        for r, seed in _folders(top):
            path = r.path / "per_utt.csv"
            if not path.is_file():
                continue
            with path.open(encoding="utf-8", newline="") as f:
                rows = [row for row in csv.DictReader(f) if row.get("flags")]
            for row in rows[:per_result]:
                out.append({"run": e.label, "testset": name, "step": top.step, "utt": row["utt"] + (f" (seed {seed})" if seed else ""),
                            "file": row["utt"] + (f"_seed{seed}" if seed else ""),
                            "flags": row["flags"].replace(";", ", "), "wer": row.get("wer") or MISSING,
                            "ratio": row.get("duration_ratio") or MISSING, "text": row.get("reference", ""),
                            "hypothesis": row.get("hypothesis", ""), "wav": r.wavs_dir / f"{row['utt']}.wav"})
    return out


def flagged_markdown(items: list[dict], out_dir: Path, slug) -> list[str]:
    """The listing for report.md; each wav is copied into `out_dir/audio/`."""
    if not items:
        return []
    (out_dir / "audio").mkdir(exist_ok=True)
    cell = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["## Flagged utterances", "", "| run | test set | step | utt | flags | WER | duration ratio | text | "
             "hypothesis | generated |", "|---|---|---|---|---|---|---|---|---|---|"]
    for s in items:
        link = MISSING
        if s["wav"].is_file():
            dest = out_dir / "audio" / f"{slug(s['run'])}_{s['testset']}_{s['file']}_flagged.wav"
            shutil.copyfile(s["wav"], dest)
            link = f"[wav](audio/{dest.name})"
        lines.append(" | ".join(["", s["run"], s["testset"], str(s["step"]), s["utt"], s["flags"], s["wer"], s["ratio"],
                                 cell(s["text"]), cell(s["hypothesis"]), link, ""]).strip())
    return lines + [""]


def flagged_html(items: list[dict], player) -> str:
    if not items:
        return ""
    esc = html.escape
    head = "".join(f"<th>{h}</th>" for h in ("run", "test set", "step", "utt", "flags", "WER", "duration ratio",
                                             "text", "hypothesis", "generated"))
    body = "".join("<tr>" + "".join(f"<td>{esc(str(s[k]))}</td>" for k in ("run", "testset", "step", "utt", "flags",
                                                                         "wer", "ratio", "text", "hypothesis"))
                   + f"<td>{player(s['wav'])}</td></tr>" for s in items)
    return f"<h2>Flagged utterances</h2><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
