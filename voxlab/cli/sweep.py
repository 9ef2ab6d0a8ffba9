"""`make sweep SWEEP=name [SCALE=tiny|paper] [ARGS="k=v ..."]`: train every experiment of a sweep.

A sweep file (`experiments/sweeps/<name>.yaml`) lists experiment names and optional overrides
for all of them. Re-running a sweep resumes: an experiment whose matching run (same experiment,
scale and overrides) finished is skipped, an unfinished one is resumed from its newest
checkpoint, and only a missing one starts a new run. A failing experiment does not stop the
others; the failures are listed at the end. The sweep's record is
`runs/sweeps/<name>-<scale>/sweep.json`.
"""
from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

from voxlab.config import ConfigError, available_experiments, load_yaml
from voxlab.runs import find_run, newest_loadable_checkpoint, read_status
from voxlab.safe_io import write_text_atomic

def load_sweep(name: str) -> dict:
    from voxlab import config

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


def run_sweep(name: str, scale: str | None, extra: list[str] = (), train_fn=None) -> dict:
    from voxlab.config import compose
    from voxlab.cli.train import train

    train_fn = train_fn or train
    spec = load_sweep(name)
    overrides = spec["overrides"] + list(extra)
    # Every experiment's config is validated before anything trains.
    configs = {exp: compose(exp, scale, overrides) for exp in spec["experiments"]}
    record_dir = Path(next(iter(configs.values())).run.root) / "sweeps" / f"{name}-{scale}"
    record_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    for i, (exp, cfg) in enumerate(configs.items(), 1):
        print(f"[sweep {name}] {i}/{len(configs)}: {exp}")
        run = find_run(cfg.run.root, exp, scale, overrides)
        try:
            if run is not None and read_status(run).get("state") == "finished":
                print(f"[sweep {name}] {exp}: finished earlier in {run}, skipped")
            elif run is not None and newest_loadable_checkpoint(run) is not None:
                run = train_fn(None, resume=str(run))
            else:
                run = train_fn(exp, scale, overrides)
            results[exp] = {"run": str(run), "state": read_status(run).get("state")}
        except Exception as err:  # one failing experiment must not stop the sweep
            traceback.print_exc()
            run = find_run(cfg.run.root, exp, scale, overrides)
            results[exp] = {"run": str(run) if run else None, "state": "failed", "error": repr(err)[:500]}
        write_text_atomic(record_dir / "sweep.json", json.dumps(  # whole or not at all: a re-run reads it
            {"sweep": name, "scale": scale, "overrides": overrides, "results": results}, indent=2))
    try:  # a report problem must not fail a sweep whose runs finished
        from eval.reporting.report import write_report

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
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    try:
        results = run_sweep(args.sweep, args.scale, args.overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 1 if any(r["state"] != "finished" for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
