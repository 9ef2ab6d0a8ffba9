"""Sweeps: every experiment trains once, re-running resumes or skips, a failure does not stop the rest."""
import json

import pytest
import yaml

import voxlab.config as config
from voxlab.config import ConfigError
from voxlab.cli.sweep import run_sweep


@pytest.fixture
def exps(tmp_path, monkeypatch):
    root = tmp_path / "experiments"
    (root / "toy").mkdir(parents=True)
    (root / "sweeps").mkdir()
    base = yaml.safe_load(open("experiments/base.yaml"))
    base.update({"module": {"_target_": "tests.helpers.toy_module.ToyModule", "fail_at": None},
                 "datamodule": {"_target_": "tests.helpers.toy_module.ToyData"}, "optim": {"lr": 0.1}})
    base["run"].update({"root": str(tmp_path / "runs"), "checkpoint_every_steps": 2})
    base["trainer"].update({"max_steps": 4, "accelerator": "cpu", "enable_model_summary": False,
                            "log_every_n_steps": 2})
    (root / "base.yaml").write_text(yaml.safe_dump(base))
    (root / "toy" / "base.yaml").write_text("extends: ../base.yaml\n")
    (root / "toy" / "good_a.yaml").write_text("extends: base.yaml\noptim: {lr: 0.05}\n")
    (root / "toy" / "good_b.yaml").write_text("extends: base.yaml\n")
    (root / "toy" / "broken.yaml").write_text("extends: base.yaml\nmodule: {fail_at: 1}\n")
    (root / "sweeps" / "mix.yaml").write_text("experiments: [good_a, broken, good_b]\n")
    (root / "sweeps" / "typo.yaml").write_text("experiments: [good_a, nope]\n")
    monkeypatch.setattr(config, "EXPERIMENTS_DIR", root)
    return tmp_path


def test_sweep_runs_all_lists_failures_and_resumes(exps):
    results = run_sweep("mix", None)
    assert [r["state"] for r in results.values()] == ["finished", "failed", "finished"]
    record = json.loads((exps / "runs" / "sweeps" / "mix-None" / "sweep.json").read_text())
    assert record["results"]["broken"]["state"] == "failed"
    calls = []

    def counting_train(*args, **kwargs):
        from voxlab.cli.train import train
        calls.append((args, kwargs))
        return train(*args, **kwargs)

    again = run_sweep("mix", None, train_fn=counting_train)
    # finished runs are skipped; only the failed one is tried again (resumed from its checkpoint
    # if it has one, else a new run)
    assert len(calls) == 1
    assert again["good_a"]["run"] == results["good_a"]["run"]
    assert sorted(p.name for p in (exps / "runs" / "good_a").iterdir()) == ["version_0"]


def test_sweep_validates_every_experiment_first(exps):
    with pytest.raises(ConfigError, match=r"unknown experiments \['nope'\]"):
        run_sweep("typo", None)
    with pytest.raises(ConfigError, match="unknown sweep 'zzz'; available: mix, typo"):
        run_sweep("zzz", None)


def test_sweep_seeds_train_each_seed_and_combine_their_evaluations(exps):
    """--seeds 2: two runs per experiment (seed=0, seed=1); their evaluations combine into one with an
    interval over utterances and seeds, which the report reads as that experiment's row; a re-run trains nothing."""
    from eval.reporting.results import collect
    from tests.helpers.report_fixtures import write_eval
    from voxlab.cli.train import train
    from voxlab.config import load_run_config

    (exps / "experiments" / "sweeps" / "pair.yaml").write_text("experiments: [good_a, good_b]\n")
    calls = []

    def train_and_evaluate(*args, **kwargs):  # what the evaluation callback writes at the last step
        calls.append(args)
        run = train(*args, **kwargs)
        seed = int(load_run_config(run).seed)
        write_eval(run / "eval" / "en" / "step_4", "en", 0.0, 0.5, wavs=False,
                   per_utt={"u1": 10.0 + seed, "u2": 30.0 + seed, "u3": 20.0})
        return run

    results = run_sweep("pair", None, seeds=2, train_fn=train_and_evaluate)
    assert len(calls) == 4 and results["good_a"]["state"] == "finished"
    runs = results["good_a"]["runs"]
    assert sorted(runs) == ["0", "1"] and runs["0"]["run"] != runs["1"]["run"]
    assert [int(load_run_config(r["run"]).seed) for r in runs.values()] == [0, 1]
    combined = json.loads((exps / "runs" / "sweeps" / "pair-None" / "seeds" / "good_a" / "en" / "metrics.json").read_text())
    assert combined["seeds"] == [0, 1] and combined["seed_kind"] == "training" and combined["steps"] == ["step_4"]
    iv = combined["intervals"]["wer"]
    assert iv["n_seeds"] == 2 and iv["n_utts"] == 3 and iv["low"] < iv["mean"] < iv["high"]
    assert abs(iv["mean"] - (10.5 + 30.5 + 20.0) / 3) < 1e-6  # the mean over utterances and seeds
    assert run_sweep("pair", None, seeds=2, train_fn=train_and_evaluate) and len(calls) == 4
    entries = {e.experiment: e for e in collect([exps / "runs" / "sweeps" / "pair-None"])}
    entry = entries["good_a"]
    assert entry.label == "good_a (2 training seeds)" and entry.results[0].step == 4
    assert entry.results[0].interval("wer") == (iv["low"], iv["high"])
    assert sorted(entry.results[0].grid("wer")) == [0, 1]


def test_sweep_refuses_bad_seeds_and_recipes(exps):
    with pytest.raises(ConfigError, match="--seeds must be at least 1"):
        run_sweep("mix", None, seeds=0)
    with pytest.raises(ConfigError, match="unknown recipe 'fast'; available: tiny-speaks"):
        run_sweep("mix", None, recipe="fast")
