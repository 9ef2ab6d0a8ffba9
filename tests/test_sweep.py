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
