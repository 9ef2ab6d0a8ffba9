"""Several generation seeds in one evaluation: each seed is a whole evaluation folder `seed_<k>/`
(its own wavs, metrics.json, per_utt.csv, summary.md: nothing is overwritten, a stopped run resumes
seed by seed), and the folder above gets the combined metrics.json and summary.md.

The combined metrics.json keeps the usual top-level keys (`wer`, `sim`, ... : the mean over seeds,
so every reader of one evaluation reads it too), plus `seeds`, `per_seed` (each seed's figures and
folder) and `intervals` (eval/intervals.py: 95% bootstrap over utterances and seeds), also per language.
"""
from __future__ import annotations

import csv
import json
import statistics
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

from eval.errors import EvalError
from eval.intervals import METHOD, PER_UTT, RESAMPLES, BOOTSTRAP_SEED, grid_interval, read_per_utt
from voxlab.safe_io import write_text_atomic

MEANS = ("wer", "wer_corpus", "sim", "mos", "duration_ratio", "duration_ratio_median", "duration_within_25pct")
SHARED = ("testset", "normalization", "lang", "asr", "asr_protocol_exact", "sim_backend", "sim_model",
          "mos_backend", "mos_model", "wer_unavailable", "versions", "config", "generation_runtime")
# evaluate_one(seed, folder, generation, overwrite) -> metrics: one whole evaluation into `folder`
EvaluateOne = Callable[[int, Path, dict, bool], dict]


def seed_dir(out_dir: Path, seed: int) -> Path:
    return Path(out_dir) / f"seed_{seed}"


def check_seeds(seeds: Sequence[int]) -> list[int]:
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise EvalError(f"--seeds must list distinct seeds, got {seeds}")
    return seeds


def _same(a, b) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def evaluate_seeds(out_dir: Path, seeds: Sequence[int], generation: dict, evaluate_one: EvaluateOne, *,
                   config: dict | None = None, overwrite: bool = False, log=print) -> dict:
    """Evaluate every seed into `seed_<k>/` (a finished seed folder with the same generation settings and
    config is kept), then write and return the combined metrics."""
    out_dir, seeds = Path(out_dir), check_seeds(seeds)
    if (out_dir / "metrics.json").exists() and not overwrite:
        raise EvalError(f"{out_dir / 'metrics.json'} exists: choose another output folder "
                        "(results are never overwritten) or pass overwrite=True / --overwrite")
    per_seed = {}
    for seed in seeds:
        folder, gen = seed_dir(out_dir, seed), {**generation, "seed": seed}
        done = _read(folder / "metrics.json")
        if done and not overwrite and _same(done.get("generation"), gen) and (config is None or _same(done.get("config"), config)):
            log(f"seed {seed}: kept the finished evaluation in {folder}")
            per_seed[seed] = done
        else:  # new, unfinished, or made with other settings: (re)done; its wavs resume by their records
            per_seed[seed] = evaluate_one(seed, folder, gen, True)
    metrics = combine(out_dir, seeds, per_seed)
    write_text_atomic(out_dir / "summary.md", render_summary(metrics))
    write_text_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    log(" ".join(interval_text(k, metrics, digits=2 if k == "wer" else 3) for k in PER_UTT
                 if metrics["intervals"].get(k)) + f" -> {out_dir}")
    return metrics


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _mean(values) -> float | None:
    values = list(values)
    return None if not values or any(v is None for v in values) else round(statistics.fmean(values), 4)


def _langs(folder: Path) -> dict[str, str]:
    with (folder / "per_utt.csv").open(encoding="utf-8", newline="") as f:
        return {row["utt"]: row["lang"] for row in csv.DictReader(f)}


def _intervals(grids: dict, keep=lambda utt: True) -> dict:
    out = {}
    for metric, grid in grids.items():
        part = {s: {u: v for u, v in g.items() if keep(u)} for s, g in grid.items()}
        if all(part.values()):
            out[metric] = grid_interval(part)
    return {k: v for k, v in out.items() if v}


def combine(out_dir: Path, seeds: list[int], per_seed: dict[int, dict], folders: dict[int, Path] | None = None) -> dict:
    """The combined metrics of the seed folders below `out_dir` (see the module's docstring), or of the
    evaluation `folders` given per seed (`per_seed[s]["path"]` is then absolute)."""
    folders = folders or {s: seed_dir(out_dir, s) for s in seeds}
    first = per_seed[seeds[0]]
    grids = {m: {s: read_per_utt(folders[s] / "per_utt.csv", m) for s in seeds}
             for m in PER_UTT if all(per_seed[s].get(m) is not None for s in seeds)}
    langs = _langs(folders[seeds[0]])
    out = {"seeds": seeds, "n_utts": first["n_utts"], **{k: _mean(per_seed[s].get(k) for s in seeds) for k in MEANS}}
    out["intervals"] = _intervals(grids)
    out["interval_method"] = {"method": METHOD, "level": 0.95, "resamples": RESAMPLES, "bootstrap_seed": BOOTSTRAP_SEED}
    out["by_lang"] = {}
    for lang, group in first.get("by_lang", {}).items():
        out["by_lang"][lang] = {"n_utts": group["n_utts"],
                                **{k: _mean(per_seed[s]["by_lang"][lang].get(k) for s in seeds) for k in MEANS},
                                "intervals": _intervals(grids, lambda u, lang=lang: langs.get(u) == lang)}
    out["per_seed"] = {str(s): {"path": folders[s].name if folders[s].parent == Path(out_dir) else str(folders[s].resolve()), **{k: per_seed[s].get(k) for k in MEANS},
                                "flagged": (per_seed[s].get("failures") or {}).get("any")} for s in seeds}
    failures = [per_seed[s].get("failures") for s in seeds]
    if all(isinstance(f, dict) for f in failures):  # counted over utterance x seed pairs
        out["failures"] = _sum_failures(failures)
    out.update({k: first[k] for k in SHARED if k in first})
    gen = {k: v for k, v in (first.get("generation") or {}).items() if k != "seed"}
    out.update({"generation": {**gen, "seeds": seeds}, "wavs_dir": first.get("wavs_dir"),
                "n_generated": sum(per_seed[s].get("n_generated", 0) for s in seeds),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    return out


def combine_runs(runs: dict[int, Path], out_dir: Path) -> dict[str, Path]:
    """Several training seeds of one experiment as one evaluation per test set: each run's newest
    evaluation (`<run>/eval/<testset>/step_<N>/`) of every test set all runs evaluated, combined into
    `out_dir/<testset>/` (metrics.json and summary.md, as several generation seeds are). Returns
    testset -> combined folder."""
    seeds = sorted(runs)
    newest = {s: _newest_evaluations(runs[s]) for s in seeds}
    out = {}
    for testset in sorted(set.intersection(*(set(n) for n in newest.values()))):
        folders = {s: newest[s][testset] for s in seeds}
        per_seed = {s: _read(folders[s] / "metrics.json") for s in seeds}
        steps = sorted({f.name for f in folders.values()})
        metrics = combine(out_dir / testset, seeds, per_seed, folders)
        metrics.update({"seed_kind": "training", "steps": steps, "generation": per_seed[seeds[0]].get("generation"),
                        "runs": {str(s): str(Path(runs[s]).resolve()) for s in seeds}})
        (out_dir / testset).mkdir(parents=True, exist_ok=True)
        write_text_atomic(out_dir / testset / "summary.md", render_summary(metrics))
        write_text_atomic(out_dir / testset / "metrics.json", json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
        out[testset] = out_dir / testset
    return out


def _newest_evaluations(run: Path) -> dict[str, Path]:
    """testset -> the newest `step_<N>` folder of a run's evaluations that holds metrics.json."""
    out = {}
    for set_dir in sorted(p for p in (Path(run) / "eval").glob("*") if p.is_dir()):
        steps = [(int(p.name[5:]), p) for p in set_dir.glob("step_*")
                 if p.name[5:].isdigit() and (p / "metrics.json").is_file()]
        if steps:
            out[set_dir.name] = max(steps)[1]
    return out


def _sum_failures(failures: list[dict]) -> dict:
    out = dict(failures[0])
    for key, value in failures[0].items():
        if isinstance(value, int):
            out[key] = sum(f.get(key, 0) for f in failures)
        elif key == "decided":
            out[key] = {k: sum(f[key].get(k, 0) for f in failures) for k in value}
    out["counted_over"] = "utterance x seed"
    return out


def interval_text(metric: str, metrics: dict, digits: int = 1) -> str:
    """`WER 12.3 [11.1, 13.6] (3 seeds, 95% bootstrap)`; the plain mean when there is no interval."""
    name, iv, value = metric.upper(), metrics["intervals"].get(metric), metrics.get(metric)
    if iv is None:
        return f"{name} {'—' if value is None else f'{value:.{digits}f}'}"
    return (f"{name} {value:.{digits}f} [{iv['low']:.{digits}f}, {iv['high']:.{digits}f}] "
            f"({len(metrics['seeds'])} seeds, {round(100 * iv['level'])}% bootstrap)")


def render_summary(m: dict) -> str:
    ts, n = m["testset"], len(m["seeds"])
    kind = "training seeds" if m.get("seed_kind") == "training" else "seeds"
    lines = [f"# Seed-TTS-Eval: {ts['name']} ({n} {kind}: {', '.join(map(str, m['seeds']))})", "",
             f"- test set: `{ts['path']}` ({m['n_utts']} utts" + (f", limit {ts['limit']}" if ts.get("limit") else "") + ")"]
    if m.get("wer_unavailable"):
        lines.append(f"- WER unavailable: {m['wer_unavailable']}")
    else:
        lines.append(f"- {interval_text('wer', m)} (mean of per-utterance WER x100); corpus WER "
                     f"{m['wer_corpus']:.2f} (mean over seeds)")
    if m.get("sim") is not None:
        lines.append(f"- {interval_text('sim', m, 3)} with {m['sim_model']}")
    if m.get("mos") is not None:
        lines.append(f"- {interval_text('mos', m, 2)} predicted by {m['mos_model']}")
    if m.get("duration_ratio") is not None:
        lines.append(f"- duration generated / ground truth: mean {m['duration_ratio']:.3f} (mean over seeds)")
    im = m["interval_method"]
    lines.append(f"- intervals: {round(100 * im['level'])}% percentile {im['method']} ({im['resamples']} "
                 f"resamples, bootstrap seed {im['bootstrap_seed']})")
    if m.get("failures"):
        lines.append(f"- flagged: {m['failures']['any']} of {m['failures']['n_utts']} utterance x seed pairs")
    lines += ["", "| seed | WER | corpus WER | SIM | MOS | duration ratio | flagged | folder |", "|---|---|---|---|---|---|---|---|"]
    cell = lambda x, d: "—" if x is None else f"{x:.{d}f}"  # noqa: E731
    for s, p in m["per_seed"].items():
        lines.append(f"| {s} | {cell(p['wer'], 2)} | {cell(p['wer_corpus'], 2)} | {cell(p['sim'], 4)} | "
                     f"{cell(p['mos'], 2)} | {cell(p['duration_ratio'], 3)} | {p['flagged'] if p['flagged'] is not None else '—'} | "
                     f"[{p['path']}]({p['path']}/summary.md) |")
    if len(m["by_lang"]) > 1:
        lines += ["", "| lang | utts | WER | SIM |", "|---|---|---|---|"]
        for lang, g in m["by_lang"].items():
            g = {**g, "seeds": m["seeds"]}
            lines.append(f"| {lang} | {g['n_utts']} | {interval_text('wer', g)[4:]} | {interval_text('sim', g, 3)[4:]} |")
    return "\n".join(lines) + "\n"
