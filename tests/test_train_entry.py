"""The training entry point: run folders, checkpoints, resume, failure handling."""
import csv
import json

import pytest
import yaml

from voxlab.checkpoint import CheckpointError, atomic_torch_save, load_checkpoint
from voxlab.config import ConfigError
from voxlab.runs import resolve_resume
from tests.helpers.toy_module import toy_experiment
from voxlab.cli.train import main, train


@pytest.fixture
def exp(tmp_path):
    return toy_experiment(tmp_path, run={"checkpoint_every_steps": 4},
                          trainer={"max_steps": 6, "log_every_n_steps": 2})


def test_runs_are_versioned_and_complete(exp, tmp_path):
    run0 = train(exp)
    run1 = train(exp)
    assert run0.name == "version_0" and run1.name == "version_1" and run0.parent.name == "toy"
    assert yaml.safe_load((run0 / "config.yaml").read_text())["trainer"]["max_steps"] == 6
    assert json.loads((run0 / "status.json").read_text())["state"] == "finished"
    ckpts = sorted(p.name for p in (run0 / "checkpoints").iterdir())
    assert "last.ckpt" in ckpts and "step_0000004.ckpt" in ckpts and not any("-v" in c for c in ckpts)
    ckpt = load_checkpoint(run0 / "checkpoints" / "last.ckpt")  # weights-only loadable
    assert ckpt["voxlab_config"]["experiment"] == "toy" and ckpt["global_step"] == 6
    rows = list(csv.DictReader(open(run0 / "csv" / "metrics.csv")))
    assert any(r.get("train/loss") for r in rows)
    assert any((run0 / "tensorboard").iterdir())


def test_resume_continues_in_the_same_folder(exp):
    run = train(exp)
    again = train(None, overrides=["trainer.max_steps=10"], resume=str(run))
    assert again == run
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 10
    steps = {int(r["step"]) for r in csv.DictReader(open(run / "csv" / "metrics.csv")) if r.get("train/loss")}
    assert min(steps) < 6 <= max(steps)  # the resumed run appended to the log, nothing was lost
    assert yaml.safe_load((run / "config.yaml").read_text())["trainer"]["max_steps"] == 10
    with pytest.raises(ConfigError, match="unknown key 'trainer.max_stepz'"):
        train(None, overrides=["trainer.max_stepz=3"], resume=str(run))


def test_failing_run_records_failure(exp):
    with pytest.raises(RuntimeError, match="toy failure"):
        train(exp, overrides=["module.fail_at=2"])
    status = json.loads(next(iter(sorted((__import__("pathlib").Path(exp).parent.parent / "runs" / "toy").iterdir())))
                        .joinpath("status.json").read_text())
    assert status["state"] == "failed" and "toy failure" in status["error"]


def test_cli_reports_config_errors(exp, capsys):
    assert main(["--exp", "no_such_exp"]) == 2
    assert "unknown experiment 'no_such_exp'" in capsys.readouterr().err
    assert main(["--exp", exp, "optim.lrr=1"]) == 2
    assert "did you mean 'optim.lr'" in capsys.readouterr().err


def test_checkpoint_safety(tmp_path):
    path = atomic_torch_save({"a": 1}, tmp_path / "x.ckpt")
    assert load_checkpoint(path) == {"a": 1} and not list(tmp_path.glob(".*tmp*"))
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(CheckpointError, match=r"x.ckpt: cannot be read with torch.load\(weights_only=True\): truncated"):
        load_checkpoint(path)
    import pickle

    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"state_dict": Payload()}))
    with pytest.raises(CheckpointError, match=r"evil.ckpt: cannot be read with torch.load\(weights_only=True\): refused"):
        load_checkpoint(evil)
    with pytest.raises(FileNotFoundError, match="neither a run folder"):
        resolve_resume(tmp_path / "nothing")


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_signal_saves_checkpoint_and_resumes(exp, sig):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.Popen([sys.executable, "-m", "voxlab.cli.train", "--exp", exp, "trainer.max_steps=400",
                             "module.sleep=0.05"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run = Path(exp).parent.parent / "runs" / "toy" / "version_0"
    deadline = time.time() + 120
    while time.time() < deadline and not list((run / "csv").glob("metrics.csv")):
        time.sleep(0.2)  # wait until training has logged something
    proc.send_signal(getattr(signal, sig))
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "continue with: make train RESUME=" in out
    assert json.loads((run / "status.json").read_text())["state"] == "interrupted"
    stopped = load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"]
    assert 0 < stopped < 400
    train(None, resume=str(run), overrides=["module.sleep=0.0"])
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 400


def test_nonfinite_loss_is_skipped_or_stops_with_a_clear_message(exp):
    run = train(exp, overrides=["module.nan_at=3"])
    ckpt = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert all(bool(v.isfinite().all()) for v in ckpt["state_dict"].values())
    rows = list(csv.DictReader(open(run / "csv" / "metrics.csv")))
    assert any(r.get("train/nonfinite_skips") == "1.0" for r in rows)
    with pytest.raises(RuntimeError, match=r"non-finite loss at step 3; batch utterances: toy3_0, toy3_1"):
        train(exp, overrides=["module.nan_at=3", "nonfinite.policy=stop"])


def test_resume_skips_a_torn_last_checkpoint(exp):
    run = train(exp)  # step checkpoint at 4, last at 6
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])  # as if killed mid-write without the atomic rename
    (run / "checkpoints" / ".last.ckpt.tmp999").write_bytes(b"partial")
    run_dir, ckpt, branch = resolve_resume(run)
    assert ckpt.name == "step_0000004.ckpt" and not branch
    assert (run / "checkpoints" / ".last.ckpt.tmp999").exists()  # resolving only reads
    train(None, resume=str(run))  # with the run's lock held, the stale temporary file goes
    assert not (run / "checkpoints" / ".last.ckpt.tmp999").exists()


def test_status_follows_the_run(tmp_path):
    """status.json shows the step of the newest checkpoint while training (not `step: 0` until the
    end), and how far training got at each validation."""
    from types import SimpleNamespace

    from callbacks.run_folder import RunFolder

    callback = RunFolder(tmp_path)
    callback.checkpoint_saved(tmp_path / "step_0000040.ckpt", 40)
    assert json.loads((tmp_path / "status.json").read_text()) | {"time": None} == \
        {"state": "running", "step": 40, "trained_to": 40, "time": None}
    callback.on_validation_end(SimpleNamespace(is_global_zero=False, global_step=50, sanity_checking=False), None)
    assert json.loads((tmp_path / "status.json").read_text())["trained_to"] == 40  # other ranks never write
    callback.on_validation_end(SimpleNamespace(is_global_zero=True, global_step=50, sanity_checking=False), None)
    assert json.loads((tmp_path / "status.json").read_text()) | {"time": None} == \
        {"state": "running", "step": 40, "trained_to": 50, "time": None}
