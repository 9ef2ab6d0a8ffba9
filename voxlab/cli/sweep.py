"""`make sweep SWEEP=name [SCALE=tiny|paper] [ARGS="k=v ..."]`: train every experiment of a sweep.

A sweep file (`experiments/sweeps/<name>.yaml`) lists experiment names and optional overrides
for all of them. Re-running a sweep resumes: an experiment whose matching run (same experiment,
scale and overrides) finished is skipped, an unfinished one is resumed from its newest
checkpoint, and only a missing one starts a new run. A failing experiment does not stop the
others; the failures are listed at the end. The sweep's record is
`runs/sweeps/<name>-<scale>/sweep.json`.

`--seeds N` trains each experiment N times (training seeds `seed=0 .. N-1`, each its own run). An
experiment whose seeds all finished gets, per test set its runs evaluated, the combined evaluation
`runs/sweeps/<name>-<scale>/seeds/<exp>/<testset>/` (eval/seeds.py: the mean over the seeds' latest
evaluations with a 95% bootstrap interval over utterances and seeds), which the report's ablation
table reads: each row's change against d256s9 with the paired interval of the difference.
`--recipe tiny-speaks` adds the demo's backbone recipe and an evaluation of every run at its last
step on the whole English mini test set (what the miniature ablations need: docs/evaluation.md).
"""
from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

from eval.reporting.report import write_report
from eval.seeds import combine_runs
from voxlab import config
from voxlab.config import ConfigError, available_experiments, compose, load_yaml
from voxlab.runs import find_run, newest_loadable_checkpoint, read_status
from voxlab.safe_io import write_text_atomic


def load_sweep(name: str) -> dict:
    root = config.EXPERIMENTS_DIR / "sweeps"
    path = root / f"{name}.yaml"
    if not path.is_file():
        options = sorted(p.stem for p in root.glob("*.yaml"))
        raise ConfigError(f"unknown sweep {name!r}; available: {', '.join(options) or 'none'}")
    spec = load_yaml(path.read_text()) or {}
    unknown = set(spec) - {"experiments", "overrides", "description"}
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {sorted(unknown)}; expected experiments, overrides, description")
    exps = spec.get("experiments") or []
    known = available_experiments()
    missing = [e for e in exps if e not in known]
    if not exps or missing:
        raise ConfigError(f"{path}: {'no experiments listed' if not exps else f'unknown experiments {missing}'}")
    return {"path": path, "experiments": list(exps), "overrides": list(spec.get("overrides") or [])}


# the named recipes a sweep can add to every experiment (recipe_overrides), with what each is
RECIPES = {"tiny-speaks": "the demo's backbone recipe, each run evaluated at its end on the English mini test set"}


def recipe_overrides(recipe: str | None, data_root: str, steps: int | None = None) -> list[str]:
    """The overrides a named recipe adds to every experiment of a sweep (`steps`: its training steps,
    default the demo's; the one evaluation is at the last step)."""
    if recipe is None:
        return []
    if recipe not in RECIPES:
        raise ConfigError(f"unknown recipe {recipe!r}; available: {', '.join(RECIPES)}")
    from voxlab.cli.demo import BACKBONE_RECIPE, EVAL_SETTINGS, TTS_STEPS  # the demo command loads Lightning: only with a recipe

    steps = steps or TTS_STEPS
    return [*BACKBONE_RECIPE, f"trainer.max_steps={steps}",
            "callbacks.seedtts_eval._target_=callbacks.evaluation.SeedTTSEvalCallback",
            f"callbacks.seedtts_eval.every_n_steps={steps}", "callbacks.seedtts_eval.limit=null",
            f"callbacks.seedtts_eval.cfg={EVAL_SETTINGS['cfg']}",
            f"callbacks.seedtts_eval.testset=[{data_root}/seedtts/en/meta.lst]"]


def _train_one(train_fn, exp: str, scale: str | None, overrides: list[str], root: str, log) -> dict:
    """Train (or resume, or skip when finished) one run; a failure is recorded, not raised."""
    run = find_run(root, exp, scale, overrides)
    try:
        if run is not None and read_status(run).get("state") == "finished":
            log(f"finished earlier in {run}, skipped")
        elif run is not None and newest_loadable_checkpoint(run) is not None:
            run = train_fn(None, resume=str(run))
        else:
            run = train_fn(exp, scale, overrides)
        return {"run": str(run), "state": read_status(run).get("state")}
    except Exception as err:  # one failing experiment must not stop the sweep
        traceback.print_exc()
        run = find_run(root, exp, scale, overrides)
        return {"run": str(run) if run else None, "state": "failed", "error": repr(err)[:500]}


def run_sweep(name: str, scale: str | None, extra: list[str] = (), train_fn=None, seeds: int = 1,
              recipe: str | None = None) -> dict:
    from voxlab.cli.train import train  # the train command's Lightning stack: not loaded for `--help` or a bad sweep

    train_fn = train_fn or train
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    spec = load_sweep(name)
    first = compose(spec["experiments"][0], scale, spec["overrides"] + list(extra))
    steps = next((int(o.split("=", 1)[1]) for o in extra if o.startswith("trainer.max_steps=")), None)
    # the recipe first: the command line's own overrides win over it
    overrides = spec["overrides"] + recipe_overrides(recipe, first.data.root, steps) + list(extra)
    seed_args = {s: ([f"seed={s}"] if seeds > 1 else []) for s in range(seeds)}
    # Every experiment's config is validated before anything trains.
    configs = {exp: compose(exp, scale, overrides + seed_args[seeds - 1]) for exp in spec["experiments"]}
    root = str(next(iter(configs.values())).run.root)
    record_dir = Path(root) / "sweeps" / f"{name}-{scale}"
    record_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}

    def save_record() -> None:  # whole or not at all: a re-run reads it
        write_text_atomic(record_dir / "sweep.json", json.dumps(
            {"sweep": name, "scale": scale, "overrides": overrides, "seeds": seeds, "results": results}, indent=2))

    for i, exp in enumerate(configs, 1):
        for seed, seed_arg in seed_args.items():
            tag = f"{exp}" + (f" seed {seed}" if seeds > 1 else "")
            print(f"[sweep {name}] {i}/{len(configs)}: {tag}", flush=True)
            one = _train_one(train_fn, exp, scale, overrides + seed_arg, root,
                             lambda msg, tag=tag: print(f"[sweep {name}] {tag}: {msg}", flush=True))
            if seeds == 1:
                results[exp] = one
            else:
                runs = results.setdefault(exp, {"runs": {}})["runs"]
                runs[str(seed)] = one
                states = [r["state"] for r in runs.values()]
                results[exp]["state"] = ("finished" if len(states) == seeds and set(states) == {"finished"}
                                         else next((s for s in states if s != "finished"), "partial"))
            save_record()
        if seeds > 1 and results[exp]["state"] == "finished":
            runs = {int(s): Path(r["run"]) for s, r in results[exp]["runs"].items()}
            results[exp]["combined"] = {k: str(v) for k, v in
                                        combine_runs(runs, record_dir / "seeds" / exp).items()}
            save_record()
    try:  # a report problem must not fail a sweep whose runs finished
        print(f"[sweep {name}] report: {write_report([record_dir], record_dir / 'report')}")
    except Exception as err:
        print(f"[sweep {name}] report not written: {err}")
    failed = [e for e, r in results.items() if r["state"] != "finished"]
    print(f"[sweep {name}] done: {len(results) - len(failed)} finished, {len(failed)} failed"
          + (f": {', '.join(failed)}" if failed else ""))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep", required=True)
    parser.add_argument("--scale", default=None)
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per experiment (seed=0..N-1; default 1)")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default=None,
                        help="; ".join(f"{name}: {what}" for name, what in RECIPES.items()))
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    try:
        results = run_sweep(args.sweep, args.scale, args.overrides, seeds=args.seeds, recipe=args.recipe)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 1 if any(r["state"] != "finished" for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
