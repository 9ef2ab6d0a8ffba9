"""Training conveniences through the real entry point (voxlab.cli.train) on a toy module: the EMA of the
weights (callbacks/ema.py: what checkpoints hold, what validation sees, exact resume), checkpoint
averaging (voxlab/cli/average.py), loggers chosen by `run.loggers`, progress lines when stdout is not
a terminal; and, on the tiny TTS model, that EMA and averaged checkpoints are what models.load gives."""
from __future__ import annotations

import csv

import pytest
import torch
import yaml

from tests.helpers.rng import keep_global_rng  # noqa: F401 - autouse: the suite's random state is kept

from tests.helpers.toy_module import ToyData, ToyModule, toy_experiment
from voxlab.cli.average import main as average_main
from voxlab.cli.train import train
from voxlab.config import ConfigError

DECAY, START = 0.5, 2


class ToyValModule(ToyModule):
    """The toy module with a validation that logs the weights it sees."""

    def validation_step(self, batch, batch_idx):
        self.log("val/weight_sum", self.net.weight.sum() + self.net.bias.sum())


class ToyValData(ToyData):
    """The same batch every step, so a run resumed mid-epoch sees what an uninterrupted one sees."""

    def train_dataloader(self):
        from torch.utils.data import DataLoader, TensorDataset

        x = torch.randn(8, 4, generator=torch.Generator().manual_seed(0)).repeat(8, 1)
        return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)

    def val_dataloader(self):
        return self.train_dataloader()


@pytest.fixture(autouse=True)
def _allow_this_module(monkeypatch):
    import os

    monkeypatch.setenv("VOXLAB_ALLOW_TARGETS", os.environ["VOXLAB_ALLOW_TARGETS"] + ",tests.test_training_conveniences")


def experiment(tmp_path, ema: bool = True, **run) -> str:
    exp = toy_experiment(tmp_path, run={"checkpoint_every_steps": 1, "keep_checkpoints": -1, **run},
                         trainer={"max_steps": 5, "val_check_interval": 2, "limit_val_batches": 1})
    base_file = tmp_path / "exps" / "base.yaml"
    base = yaml.safe_load(base_file.read_text())
    base["module"]["_target_"] = "tests.test_training_conveniences.ToyValModule"
    base["datamodule"]["_target_"] = "tests.test_training_conveniences.ToyValData"
    base["callbacks"] = {"ema": {"_target_": "callbacks.ema.BackboneEMA" if ema else None, "decay": DECAY,
                                 "start_step": START, "every_n_steps": 1}}
    base_file.write_text(yaml.safe_dump(base))
    return exp


def flat(state: dict) -> torch.Tensor:
    return torch.cat([state["net.weight"].flatten(), state["net.bias"].flatten()])


def step_ckpts(run) -> dict[int, dict]:
    out = {}
    for p in sorted((run / "checkpoints").glob("step_*.ckpt")):
        c = torch.load(p, weights_only=True)
        out[c["global_step"]] = c
    return out


def test_ema_checkpoints_validation_and_exact_resume(tmp_path):
    run = train(experiment(tmp_path))
    ckpts = step_ckpts(run)
    assert sorted(ckpts) == [1, 2, 3, 4, 5]
    ema = None
    for step, c in sorted(ckpts.items()):
        raw = flat(c["current_model_state"])  # the trained weights ride beside the average
        ema = raw if step <= START else DECAY * ema + (1 - DECAY) * raw  # before START the average follows
        assert torch.allclose(flat(c["state_dict"]), ema, atol=1e-6), step
    assert not torch.allclose(ema, raw, atol=1e-4)  # the average really differs from the weights
    # validation (steps 2 and 4) saw the EMA weights, and training went on with the raw ones
    with (run / "csv" / "metrics.csv").open() as f:
        seen = {int(r["step"]): float(r["val/weight_sum"]) for r in csv.DictReader(f) if r.get("val/weight_sum")}
    assert sorted(seen) == [1, 3]  # Lightning logs the validation after step N at step N - 1
    for step in (2, 4):
        assert seen[step - 1] == pytest.approx(float(flat(ckpts[step]["state_dict"]).sum()), abs=1e-5)

    # 3 steps, then resume to 5: the same weights and the same average as 5 in one go
    (tmp_path / "b").mkdir()
    exp2 = experiment(tmp_path / "b")
    first = train(exp2, overrides=["trainer.max_steps=3"])
    resumed = train(None, resume=str(first), overrides=["trainer.max_steps=5"])
    a, b = step_ckpts(run)[5], step_ckpts(resumed)[5]
    assert torch.allclose(flat(a["state_dict"]), flat(b["state_dict"]), atol=1e-6)
    assert torch.allclose(flat(a["current_model_state"]), flat(b["current_model_state"]), atol=1e-6)


def test_average_the_newest_checkpoints_of_a_run(tmp_path, capsys):
    run = train(experiment(tmp_path, ema=False))
    ckpts = step_ckpts(run)
    assert average_main([str(run), "--last", "3"]) == 0
    out = run / "averaged" / "avg_last3_step5.ckpt"
    avg = torch.load(out, weights_only=True)
    expected = sum(flat(ckpts[s]["state_dict"]) for s in (3, 4, 5)) / 3
    assert torch.allclose(flat(avg["state_dict"]), expected, atol=1e-6)
    assert avg["voxlab_averaged"]["steps"] == [3, 4, 5] and "optimizer_states" not in avg
    assert avg["voxlab_config"] == ckpts[5]["voxlab_config"]
    # files given one by one; an existing output is never replaced; mismatched weights are named
    files = [str(run / "checkpoints" / f"step_000000{s}.ckpt") for s in (1, 2)]
    assert average_main([*files, "--out", str(tmp_path / "two.ckpt")]) == 0
    two = torch.load(tmp_path / "two.ckpt", weights_only=True)
    assert torch.allclose(flat(two["state_dict"]), (flat(ckpts[1]["state_dict"]) + flat(ckpts[2]["state_dict"])) / 2)
    before = out.read_bytes()
    assert average_main([str(run), "--last", "3"]) == 2 and out.read_bytes() == before
    assert "exists: nothing is overwritten" in capsys.readouterr().err
    bad = dict(ckpts[3])
    bad["state_dict"] = {**bad["state_dict"], "net.weight": torch.zeros(2, 4)}
    torch.save(bad, tmp_path / "bad.ckpt")
    assert average_main([files[0], str(tmp_path / "bad.ckpt"), "--out", str(tmp_path / "x.ckpt")]) == 2
    assert "net.weight has shape (2, 4)" in capsys.readouterr().err and not (tmp_path / "x.ckpt").exists()


def test_loggers_are_chosen_in_config_and_progress_lines_reach_a_log(tmp_path, capsys):
    exp = experiment(tmp_path, ema=False)
    run = train(exp, overrides=["run.loggers=[csv]"])
    assert (run / "csv" / "metrics.csv").is_file() and not (run / "tensorboard").exists()
    # stdout is not a terminal here (as in `make demo > log`): plain progress lines on it
    assert "[train] step 5/5 (100%)" in capsys.readouterr().out
    run = train(exp)  # the default: TensorBoard and CSV
    assert list((run / "tensorboard").glob("events.out.tfevents.*")) and (run / "csv" / "metrics.csv").is_file()
    with pytest.raises(ConfigError, match=r"run.loggers: unknown logger\(s\) \['tensorbord'\]"):
        train(exp, overrides=["run.loggers=[tensorbord]"])
    with pytest.raises(ConfigError, match="run.loggers is empty"):
        train(exp, overrides=["run.loggers=[]"])
    import importlib.util
    if importlib.util.find_spec("wandb") is None:
        with pytest.raises(ConfigError, match=r"\['wandb'\] named but not installed: `.venv/bin/pip install wandb`"):
            train(exp, overrides=["run.loggers=[csv,wandb]"])
    else:  # installed: an offline W&B run inside the run folder, nothing sent
        run = train(exp, overrides=["run.loggers=[csv,wandb]"])
        assert list((run / "wandb").glob("offline-run-*"))


@pytest.mark.slow
def test_tts_ema_and_averaged_checkpoints_are_what_models_load_gives(tts_assets, tmp_path):
    from conftest import tts_overrides

    import models

    root, corpus, vae_dir = tts_assets
    overrides = tts_overrides(root, corpus, vae_dir, steps=2) + [
        "callbacks.ema._target_=callbacks.ema.BackboneEMA", "callbacks.ema.decay=0.5", "run.checkpoint_every_steps=1",
        "callbacks.tts_samples._target_=null"]
    run = train("d256s9", "tiny", overrides)
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    name = next(k for k in last["state_dict"] if k.startswith("model.") and last["state_dict"][k].is_floating_point()
                and not torch.allclose(last["state_dict"][k], last["current_model_state"][k]))
    weights = models.load(run, optimize=False).backbone.state_dict()  # unpacked CPU weights: the same names
    assert torch.equal(weights[name[len("model."):]], last["state_dict"][name])  # the EMA, not the raw weights
    assert average_main([str(run), "--last", "2", "--out", str(tmp_path / "avg.ckpt")]) == 0
    averaged = models.load(tmp_path / "avg.ckpt", optimize=False)
    sources = torch.load(tmp_path / "avg.ckpt", weights_only=True)["voxlab_averaged"]["checkpoints"]
    expected = sum(torch.load(p, weights_only=True)["state_dict"][name] for p in sources) / 2
    assert torch.allclose(averaged.backbone.state_dict()[name[len("model."):]], expected, atol=1e-6)
    wav, sr = averaged.generate("hello", seed=0, max_len=4)
    assert wav.numel() > 0 and sr == 16000
