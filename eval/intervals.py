"""95% intervals by bootstrap over utterances and seeds, for one run and for the difference of two.

A run's per-utterance scores form a seeds x utterances grid. One bootstrap resample draws the
utterances with replacement and, independently, the seeds with replacement, and takes the mean of
the cells they select; the interval is the 2.5th and 97.5th percentiles of RESAMPLES such means.
The generator is seeded with BOOTSTRAP_SEED, so the same scores always give the same interval.
A difference of two runs is paired: the grid of (a - b) over the utterances and seeds both have
(runs without a shared seed are paired over utterances only, each averaged over its own seeds).
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

RESAMPLES = 2000
BOOTSTRAP_SEED = 0
LEVEL = 0.95
METHOD = "bootstrap over utterances and seeds"
# metrics.json key -> its per_utt.csv column and the factor to metrics.json's unit (WER x100)
PER_UTT = {"wer": ("wer", 100.0), "sim": ("sim", 1.0), "mos": ("mos", 1.0)}

Grid = dict  # seed -> {utt: value}


def bootstrap(grid, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED, level: float = LEVEL) -> dict:
    """{"mean", "low", "high", ...} of a seeds x utterances array (or list of rows)."""
    values = np.asarray(grid, dtype=np.float64)
    if values.ndim != 2 or values.size == 0 or not np.isfinite(values).all():
        raise ValueError(f"bootstrap needs a complete seeds x utterances grid of numbers, got shape {values.shape}")
    n_seeds, n_utts = values.shape
    rng = np.random.default_rng(seed)
    # how often each seed / utterance is drawn in each resample: the mean is then one weighted sum
    seed_w = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=resamples)
    utt_w = rng.multinomial(n_utts, np.full(n_utts, 1 / n_utts), size=resamples)
    means = np.einsum("bs,su,bu->b", seed_w, values, utt_w) / (n_seeds * n_utts)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return {"mean": float(values.mean()), "low": float(low), "high": float(high), "level": level,
            "method": METHOD, "resamples": resamples, "bootstrap_seed": seed,
            "n_seeds": n_seeds, "n_utts": n_utts}


def _complete(grid: Grid, seeds, utts) -> np.ndarray:
    return np.array([[grid[s][u] for u in utts] for s in seeds], dtype=np.float64)


def grid_interval(grid: Grid, **kw) -> dict | None:
    """The interval of one run's mean over the utterances scored under every seed (None: none are)."""
    seeds = sorted(grid)
    utts = sorted(set.intersection(*(set(grid[s]) for s in seeds))) if seeds else []
    return bootstrap(_complete(grid, seeds, utts), **kw) if utts else None


def paired_difference(a: Grid, b: Grid, **kw) -> dict | None:
    """The interval of mean(a) - mean(b), paired over shared utterances and seeds; `significant` when
    it excludes zero. None when the runs share no utterance."""
    shared = sorted(set(a) & set(b))
    if shared:
        pairs = [(a[s], b[s]) for s in shared]
    else:  # no common seed: each run's per-utterance mean over its own seeds, paired over utterances
        pairs = [tuple({u: float(np.mean([g[s][u] for s in g])) for u in set.intersection(*map(set, g.values()))}
                       for g in (a, b))]
    utts = sorted(set.intersection(*(set(x) & set(y) for x, y in pairs)))
    if not utts:
        return None
    out = bootstrap([[x[u] - y[u] for u in utts] for x, y in pairs], **kw)
    out["significant"] = excludes_zero(out)
    out["paired_seeds"] = shared
    return out


def excludes_zero(interval: dict | None) -> bool:
    return bool(interval) and (interval["low"] > 0 or interval["high"] < 0)


def read_per_utt(path: Path, metric: str) -> dict[str, float]:
    """utt -> the metric in metrics.json's unit from a per_utt.csv (WER from the S/D/I/N counts when
    there, exact; else the rounded `wer` cell); unscored cells are left out."""
    column, scale = PER_UTT[metric]
    out = {}
    with Path(path).open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            counts = [row.get(k) or "" for k in ("S", "D", "I", "N")]
            if metric == "wer" and all(counts) and int(counts[3]) > 0:
                out[row["utt"]] = scale * (int(counts[0]) + int(counts[1]) + int(counts[2])) / int(counts[3])
            elif row.get(column) not in ("", None):
                out[row["utt"]] = scale * float(row[column])
    return out
