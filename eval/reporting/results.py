"""Evaluation results on disk -> report entries: run folders, sweep records, evaluation folders and
checkpoints (the input rules are listed in `eval/reporting/report.py`), plus cheap facts about a run (parameter
count, hours of training data). Used by the report and the comparison notebook.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from datamodules.manifest import ManifestError, read_manifest
from eval.intervals import read_per_utt
from voxlab.config import instantiate, load_run_config
from voxlab.runs import run_of_checkpoint

STEP_RE = re.compile(r"^step_(\d+)$")


class ReportError(ValueError):
    pass


@dataclass
class Result:
    """One evaluation: a folder with metrics.json (and per_utt.csv, wavs/)."""
    path: Path
    testset: str
    step: int | None
    metrics: dict

    @property
    def wer(self) -> float | None:
        return num(self.metrics.get("wer"))

    @property
    def sim(self) -> float | None:  # x100, the paper's unit
        value = num(self.metrics.get("sim"))
        return None if value is None else 100.0 * value

    @property
    def duration_ratio(self) -> float | None:  # generated / ground-truth length, mean over utterances
        return num(self.metrics.get("duration_ratio"))

    @property
    def sim_name(self) -> str:
        backend = self.metrics.get("sim_backend") or {}
        if not backend:
            return "not scored"
        name = backend.get("name") or self.metrics.get("sim_model") or "unknown"
        return name if backend.get("comparable_to_seed_tts_eval") else f"{name} (not comparable)"

    @property
    def mos(self) -> float | None:  # predicted MOS (1-5), the model in `mos_model`
        return num(self.metrics.get("mos"))

    @property
    def seeds(self) -> list[int]:
        """The generation seeds this result averages (one: a plain evaluation)."""
        return list(self.metrics.get("seeds") or [int((self.metrics.get("generation") or {}).get("seed") or 0)])

    def interval(self, metric: str) -> tuple[float, float] | None:
        """(low, high) of the 95% bootstrap interval in the property's unit (SIM x100); None: no interval
        (one seed: metrics.json has none)."""
        iv = (self.metrics.get("intervals") or {}).get(metric)
        scale = 100.0 if metric == "sim" else 1.0
        return None if not iv else (scale * iv["low"], scale * iv["high"])

    def grid(self, metric: str) -> dict[int, dict[str, float]]:
        """seed -> utt -> value in the property's unit, from each seed folder's per_utt.csv ({}: not there)."""
        per_seed = self.metrics.get("per_seed") or {}
        folders = {int(s): self.path / p["path"] for s, p in per_seed.items()} or {self.seeds[0]: self.path}
        scale = 100.0 if metric == "sim" else 1.0
        out = {}
        for seed, folder in folders.items():
            values = read_per_utt(folder / "per_utt.csv", metric) if (folder / "per_utt.csv").is_file() else {}
            if not values:
                return {}
            out[seed] = {u: scale * v for u, v in values.items()}
        return out

    @property
    def wavs_dir(self) -> Path:
        given = Path(self.metrics.get("wavs_dir") or "")
        return given if str(given) not in ("", ".") and given.is_dir() else self.path / "wavs"


@dataclass
class Entry:
    """One input of the report: a run (possibly restricted to a step), an eval folder, or a
    sweep experiment that has no run folder."""
    label: str
    run: Path | None = None
    experiment: str | None = None
    scale: str | None = None
    overrides: tuple = ()
    state: str | None = None
    config: dict = field(default_factory=dict)
    results: list[Result] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def latest(self) -> dict[str, Result]:
        """Newest result per test set."""
        out: dict[str, Result] = {}
        for r in sorted(self.results, key=lambda r: -1 if r.step is None else r.step):
            out[r.testset] = r
        return out

    def by_column(self) -> dict[str, Result]:
        """Latest result per paper column (en / zh / hard)."""
        out: dict[str, Result] = {}
        for name, r in sorted(self.latest().items()):
            col = column_of(name)
            if col and col in out:
                self.notes.append(f"{self.label}: test sets {out[col].testset!r} and {name!r} both map "
                                  f"to the {col} column; {out[col].testset!r} is shown")
            elif col:
                out[col] = r
        return out


# ---------------------------------------------------------------- inputs


def column_of(testset: str) -> str | None:
    """Paper column of a test-set name: `en` / `test-en` -> en, `zh` -> zh, `hard`, `zh_hardcase` -> hard."""
    name = testset.lower()
    if "hard" in name:
        return "hard"
    for col in ("en", "zh"):
        if name == col or re.match(rf"^(test[-_])?{col}([-_.].*)?$", name):
            return col
    return None


def num(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ReportError(f"{path}: cannot read JSON ({err})") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a JSON object")
    return data


def read_result(folder: Path, testset: str | None = None, step: int | None = None) -> Result:
    metrics = _read_json(folder / "metrics.json")
    if step is None and (m := STEP_RE.match(folder.name)):
        step = int(m.group(1))
    name = testset or (metrics.get("testset") or {}).get("name") or folder.name
    return Result(folder, name, step, metrics)


def _run_config(run: Path) -> dict:
    from omegaconf import OmegaConf

    try:
        return OmegaConf.to_container(OmegaConf.load(run / "config.yaml"), resolve=False) or {}
    except Exception as err:  # noqa: BLE001 - omegaconf/yaml raise several types
        raise ReportError(f"{run / 'config.yaml'}: cannot read ({err})") from None


def run_entry(run: Path, step: int | None = None, label: str | None = None) -> Entry:
    """A run folder with its evaluations (all steps, or only `step`)."""
    cfg = _run_config(run)
    status = _read_json(run / "status.json") if (run / "status.json").is_file() else {}
    entry = Entry(label or f"{run.parent.name}/{run.name}", run=run, experiment=cfg.get("experiment"),
                  scale=cfg.get("scale"), overrides=tuple(cfg.get("overrides") or ()),
                  state=status.get("state"), config=cfg)
    for set_dir in sorted(p for p in (run / "eval").glob("*") if p.is_dir()):
        for step_dir in sorted(p for p in set_dir.iterdir() if STEP_RE.match(p.name)):
            n = int(STEP_RE.match(step_dir.name).group(1))
            if step is not None and n != step:
                continue
            if (step_dir / "metrics.json").is_file():
                entry.results.append(read_result(step_dir, set_dir.name, n))
            else:
                entry.notes.append(f"{step_dir}: no metrics.json (unfinished or failed evaluation)")
    if step is not None and not entry.results:
        entry.notes.append(f"{run}: no evaluation at step {step}")
    return entry


def _sweep_entries(record: Path) -> list[Entry]:
    data = _read_json(record)
    results = data.get("results")
    if not isinstance(results, dict):
        raise ReportError(f"{record}: no `results` mapping (not a sweep record?)")
    sweep_dir, out = record.parent, []
    for exp, info in results.items():
        if info.get("combined"):  # several training seeds: one entry of their combined evaluations
            entry = Entry(f"{exp} ({data.get('seeds')} training seeds)", experiment=exp, scale=data.get("scale"),
                          overrides=tuple(data.get("overrides") or ()), state=info.get("state"))
            for testset, folder in sorted(info["combined"].items()):
                result = read_result(_beside(Path(folder), sweep_dir), testset)
                result.step = _combined_step(result)
                entry.results.append(result)
            out.append(entry)
            continue
        run = _find_sweep_run(info.get("run"), sweep_dir, exp)
        if run is not None:
            out.append(run_entry(run))
            continue
        entry = Entry(exp, experiment=exp, scale=data.get("scale"),
                      overrides=tuple(data.get("overrides") or ()), state=info.get("state"))
        entry.notes.append(f"sweep {data.get('sweep')}: {exp} has no run folder"
                           f" (state {info.get('state')}{', ' + info['error'] if info.get('error') else ''})")
        out.append(entry)
    return out


def _beside(path: Path, sweep_dir: Path) -> Path:
    """A path sweep.json stored relative to the sweep's working folder, found from the record's folder."""
    if path.is_dir():
        return path
    tail = path.parts[path.parts.index(sweep_dir.name) + 1:] if sweep_dir.name in path.parts else path.parts
    return sweep_dir.joinpath(*tail)


def _combined_step(result: Result) -> int | None:
    """The training step of a several-seed evaluation (None when the seeds' steps differ)."""
    steps = {int(s.split("_")[1]) for s in result.metrics.get("steps") or []}
    return steps.pop() if len(steps) == 1 else None


def _find_sweep_run(run: str | None, sweep_dir: Path, exp: str) -> Path | None:
    """sweep.json stores run paths as the sweep saw them (often relative to its working folder)."""
    if not run:
        return None
    runs_root = sweep_dir.parent.parent  # <root>/sweeps/<name>-<scale>/
    for cand in (Path(run), runs_root.parent / run, runs_root / exp / Path(run).name):
        if (cand / "config.yaml").is_file():
            return cand
    return None


def collect(inputs) -> list[Entry]:
    """Report entries for run / sweep / evaluation folders, sweep.json files and checkpoints."""
    entries: list[Entry] = []
    for item in inputs:
        path = Path(item)
        if path.is_file() and path.name == "sweep.json":
            entries += _sweep_entries(path)
        elif path.is_file() and path.suffix == ".ckpt":
            run = run_of_checkpoint(path)
            if not (run / "config.yaml").is_file():
                raise ReportError(f"{path}: cannot find its run folder (no config.yaml in {run})")
            m = re.search(r"step[_=-]?(\d+)", path.stem)
            entries.append(run_entry(run, step=int(m.group(1)) if m else None,
                                     label=f"{run.parent.name}/{run.name}:{path.stem}"))
        elif path.is_file() and path.name == "metrics.json":
            entries += collect([path.parent])
        elif not path.is_dir():
            raise ReportError(f"{path}: not found (expected a run, sweep or evaluation folder)")
        elif (path / "sweep.json").is_file():
            entries += _sweep_entries(path / "sweep.json")
        elif (path / "config.yaml").is_file():
            entries.append(run_entry(path))
        elif (path / "metrics.json").is_file():
            entries.append(_eval_entry(path))
        else:
            runs = sorted(p.parent for p in path.rglob("config.yaml") if p.parent.name.startswith("version_"))
            if not runs:
                raise ReportError(f"{path}: no run (config.yaml), sweep (sweep.json) or evaluation "
                                  "(metrics.json) found in it")
            entries += [run_entry(r) for r in runs]
    return entries


def _eval_entry(folder: Path) -> Entry:
    """One evaluation folder; inside a run (`<run>/eval/<set>/step_<N>`) it keeps the run's identity."""
    run = folder.parent.parent.parent
    if STEP_RE.match(folder.name) and folder.parent.parent.name == "eval" and (run / "config.yaml").is_file():
        entry = run_entry(run, step=int(STEP_RE.match(folder.name).group(1)),
                          label=f"{run.parent.name}/{run.name}@{folder.parent.name}/{folder.name}")
        entry.results = [r for r in entry.results if r.testset == folder.parent.name]
        return entry
    result = read_result(folder)
    return Entry(f"{folder.parent.name}/{folder.name}", results=[result])


# ---------------------------------------------------------------- facts about a run


def count_params(entry: Entry) -> int | None:
    """Parameters of the run's model, built on the meta device (no memory, no weights read);
    else a `params` number in metrics.json."""
    node = entry.config.get("model")
    if isinstance(node, dict) and node.get("_target_") and entry.run is not None:
        try:
            import torch

            with torch.device("meta"):
                model = instantiate(load_run_config(entry.run).model)
            return sum(p.numel() for p in model.parameters())
        except Exception as err:  # noqa: BLE001 - any failure just leaves the cell missing
            entry.notes.append(f"{entry.label}: parameters not counted ({type(err).__name__}: {err})"[:300])
    for r in entry.results:
        if num(r.metrics.get("params")) is not None:
            return int(r.metrics["params"])
    return None


def data_hours(entry: Entry) -> float | None:
    """Hours of audio in the run's training manifest (its `duration` fields), when readable."""
    manifest = (entry.config.get("data") or {}).get("train_manifest")
    if not isinstance(manifest, str) or "${" in manifest or not Path(manifest).is_file():
        return None

    try:
        entries, report = read_manifest(manifest, check_audio=False, cache=False)  # a report writes nothing beside it
    except ManifestError:
        return None
    if sum(report.bad.values()):
        return None  # a line without a usable duration: the total would be wrong
    return sum(e.duration for e in entries) / 3600.0
