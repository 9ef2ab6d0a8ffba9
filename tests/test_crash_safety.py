"""Crash safety: a training process killed with SIGKILL at several moments (some during a
checkpoint write) always leaves a run that resumes from its newest loadable checkpoint."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from voxlab.checkpoint import load_checkpoint
from voxlab.runs import newest_loadable_checkpoint
from tests.helpers.toy_module import toy_experiment
from voxlab.cli.train import train

KILL_AFTER_S = [0.3, 0.9, 1.7, 2.6]  # seconds after the first logged step


@pytest.fixture
def exp(tmp_path):
    return toy_experiment(tmp_path, module={"sleep": 0.02}, run={"checkpoint_every_steps": 1, "keep_checkpoints": 2},
                          trainer={"max_steps": 300, "log_every_n_steps": 1})


@pytest.mark.slow
def test_sigkill_at_several_moments_always_resumes(exp):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    run = Path(exp).parent.parent / "runs" / "toy" / "version_0"
    steps_at_kill = []
    for i, delay in enumerate(KILL_AFTER_S):
        cmd = [sys.executable, "-m", "voxlab.cli.train"] + (["--exp", exp] if i == 0 else ["--resume", str(run)])
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        start_step = _newest_step(run)
        deadline = time.time() + 120
        while time.time() < deadline and _newest_step(run) <= start_step:
            time.sleep(0.05)  # wait for this process to train and save at least one step
        time.sleep(delay)
        proc.kill()
        proc.wait()
        ckpt = newest_loadable_checkpoint(run)
        assert ckpt is not None, f"kill {i}: no loadable checkpoint left"
        steps_at_kill.append(load_checkpoint(ckpt)["global_step"])
    assert steps_at_kill == sorted(steps_at_kill) and steps_at_kill[-1] > steps_at_kill[0]
    train(None, resume=str(run))
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 300
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    assert not list((run / "checkpoints").glob(".*tmp*"))
    print(f"{len(KILL_AFTER_S)} kill points, checkpoints at steps {steps_at_kill}, all resumed")


def _newest_step(run: Path) -> int:
    ckpt = newest_loadable_checkpoint(run) if (run / "checkpoints").is_dir() else None
    return load_checkpoint(ckpt)["global_step"] if ckpt else -1


class FullDisk:
    """Checkpoint writes fail from training step `at_step` on (a full disk, or a quota on large
    files when `records_too` is False: then status.json can still be written)."""

    def __init__(self, at_step: int, records_too: bool):
        from voxlab import runs
        from voxlab.checkpoint import atomic_torch_save

        self.at_step, self.records_too, self.full = at_step, records_too, False
        self.real_save, self.real_write = atomic_torch_save, runs.write_text_atomic

    def save(self, obj, path):
        from voxlab.checkpoint import CheckpointError

        if obj.get("global_step", 0) >= self.at_step:
            self.full = True
            raise CheckpointError(f"{path}: could not be written (No space left on device)")
        return self.real_save(obj, path)

    def write(self, path, text, **kwargs):
        if self.full and self.records_too:
            raise OSError(28, "No space left on device", str(path))
        return self.real_write(path, text, **kwargs)


@pytest.mark.parametrize("at_step,records_too", [(4, True), (4, False), (6, True), (5, False)])
def test_status_never_names_a_step_whose_checkpoint_failed_to_write(tmp_path, monkeypatch, at_step, records_too):
    """Whatever checkpoint fails (a step checkpoint, or last.ckpt at the end) and whether status.json
    can still be written (max_steps 5: last.ckpt at the end fails): its step is one a checkpoint on disk holds, and it is `running` only if the
    failure could not be recorded."""
    import callbacks.run_folder
    import voxlab.runs

    exp = toy_experiment(tmp_path, run={"checkpoint_every_steps": 2, "keep_checkpoints": -1},
                         trainer={"max_steps": 5 if at_step == 5 else 6, "log_every_n_steps": 1})
    disk = FullDisk(at_step, records_too)
    monkeypatch.setattr(callbacks.run_folder, "atomic_torch_save", disk.save)
    monkeypatch.setattr(voxlab.runs, "write_text_atomic", disk.write)
    with pytest.raises(Exception, match="could not be written"):
        train(exp)
    run = tmp_path / "runs" / "toy" / "version_0"
    status = json.loads((run / "status.json").read_text())
    saved = {load_checkpoint(p)["global_step"] for p in (run / "checkpoints").glob("*.ckpt")}
    assert status["step"] in saved and status["step"] < at_step, (status, saved)
    assert status["state"] == ("running" if records_too else "failed"), status
