"""The Seed-TTS-Eval callback: a tiny d256s9 trains 2 steps with it on (no ASR, resemblyzer SIM), then
the callback is driven directly on the trained module (ASR auto/required, modes and RNG restored)."""
import csv
import json
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import soundfile as sf
import torch

from conftest import tts_overrides
from eval.backends import ASR_DISABLED
from eval.errors import MissingWeightsError
from voxlab.cli.train import train

CB = "callbacks.seedtts_eval."


def callback_overrides(corpus, **extra):
    kw = {"_target_": "callbacks.evaluation.SeedTTSEvalCallback", "testset": f"[{corpus}/seedtts/en/meta.lst]",
          "asr": "none", "sim": "resemblyzer", "limit": 2, "max_len": 6, "timesteps": 2, **extra}
    return [f"{CB}{k}={v}" for k, v in kw.items()]


@pytest.fixture(scope="module")
def trained(tts_assets):
    root, corpus, vae_dir = tts_assets
    torch.set_num_threads(1)  # 2 busy cores: one thread is faster than two fighting over them
    start = time.time()
    run = train("d256s9", "tiny", tts_overrides(root, corpus, vae_dir)
                + [f"run.root={root / 'eval_cb_runs'}"] + callback_overrides(corpus))
    print(f"2 steps + evaluation at step 2: {time.time() - start:.1f} s")
    return run, corpus


def test_training_writes_and_logs_the_evaluation(trained):
    run, corpus = trained
    step_dir = run / "eval" / "en" / "step_0000002"
    m = json.loads((step_dir / "metrics.json").read_text(encoding="utf-8"))
    assert m["n_utts"] == 2 and m["testset"]["limit"] == 2
    assert m["wer"] is None and m["wer_unavailable"] == ASR_DISABLED
    assert -1.0 <= m["sim"] <= 1.0 and m["sim_backend"]["name"] == "resemblyzer"
    assert m["generation"]["source"] == "training" and m["generation"]["step"] == 2
    assert m["generation"]["max_len"] == 6 and m["n_generated"] == 2
    assert m["generation_runtime"]["torch_threads"] >= 1 and "cores" in m["generation_runtime"]["cpu"]
    first_two = [line.split("|")[0] for line in (corpus / "seedtts/en/meta.lst").read_text().splitlines()[:2]]
    for utt in first_two:
        info = sf.info(str(step_dir / "wavs" / f"{utt}.wav"))
        assert info.samplerate == 16000 and 0 < info.frames <= 6 * 2 * 640 + 1  # at most max_len patches
    with (step_dir / "per_utt.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["utt"] for r in rows] == first_two and all(r["wer"] == "" and r["sim"] for r in rows)
    assert "WER unavailable" in (step_dir / "summary.md").read_text(encoding="utf-8")
    # how each utterance ended is recorded beside its wav, so the runaway flag is decided for all
    assert all(r["stopped_by"] in ("stop_head", "length_cap") for r in rows)
    assert m["failures"]["decided"]["runaway"] == 2 and m["failures"]["decided"]["hallucination"] == 0

    with (run / "csv" / "metrics.csv").open(encoding="utf-8") as f:
        logged = [r for r in csv.DictReader(f) if r.get("eval/en/sim")]
    assert len(logged) == 1 and int(logged[0]["step"]) == 2
    assert float(logged[0]["eval/en/sim"]) == pytest.approx(m["sim"], abs=1e-5)
    assert not logged[0].get("eval/en/wer")  # missing, not zero
    assert json.loads((run / "status.json").read_text())["state"] == "finished"


def _trainer(run_dir, step):
    return SimpleNamespace(global_step=step, global_rank=0, world_size=1, is_global_zero=True,
                           default_root_dir=str(run_dir), loggers=[], callback_metrics={}, sanity_checking=False,
                           strategy=SimpleNamespace(broadcast=lambda obj, src=0: obj))


def _trained_module(run):
    """The TTS module of `run`'s last checkpoint, as training left it."""
    from voxlab.checkpoint import load_checkpoint
    from voxlab.config import load_run_config, locate

    cfg = load_run_config(run)
    module = locate(cfg.module._target_)(cfg)
    ckpt = load_checkpoint(run / "checkpoints" / "last.ckpt")
    module.load_state_dict(ckpt["state_dict"])
    module.on_load_checkpoint(ckpt)
    return module


def test_callback_restores_modes_and_rng_and_decides_asr(trained, tmp_path, monkeypatch):
    from callbacks.evaluation import SeedTTSEvalCallback

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty_cache"))  # whisper large-v3 absent
    run, corpus = trained
    module = _trained_module(run)
    module.train()
    module.model.feat_encoder.eval()  # a part kept in eval mode on purpose must stay so

    testset = [str(corpus / "seedtts/en/meta.lst")]
    with pytest.raises(MissingWeightsError, match="large-v3"):  # required: fails before any training
        SeedTTSEvalCallback(testset, asr="required", sim="none", whisper="large-v3").setup(
            _trainer(tmp_path, 0), module, "fit")

    cb = SeedTTSEvalCallback(testset, every_n_steps=5, asr="auto", sim="none", limit=1, max_len=4, timesteps=2,
                             whisper="large-v3")  # the protocol model, absent here
    trainer = _trainer(tmp_path, 5)
    cb.setup(trainer, module, "fit")
    assert "whisper 'large-v3' weights not found" in cb.sets[0].skip_asr
    modes = {name: m.training for name, m in module.named_modules()}
    rng = torch.get_rng_state()
    cb.on_train_batch_end(trainer, module, None, None, 0)
    assert {name: m.training for name, m in module.named_modules()} == modes
    assert torch.equal(torch.get_rng_state(), rng)
    m = json.loads((tmp_path / "eval/en/step_0000005/metrics.json").read_text(encoding="utf-8"))
    assert m["n_utts"] == 1 and m["wer"] is None and "large-v3" in m["wer_unavailable"] and m["sim"] is None
    assert "_tts_model" not in dict(module.named_modules()) and not any(
        k.startswith("_tts_model") for k in module.state_dict())  # the shared wrapper is not saved twice
    assert cb.evaluate(trainer, module) == {}  # once per step (gradient accumulation repeats hooks)
    trainer.global_step = 7
    cb.on_train_batch_end(trainer, module, None, None, 0)  # not a multiple of every_n_steps
    assert not (tmp_path / "eval/en/step_0000007").exists()


def test_callback_generates_with_a_reduced_precision_copy(trained, tmp_path, monkeypatch):
    from callbacks.evaluation import SeedTTSEvalCallback
    from models.cpu_linear import Int8Linear

    run, corpus = trained
    module = _trained_module(run)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    with pytest.raises(ValueError, match="dtype"):
        SeedTTSEvalCallback([str(corpus / "seedtts/en/meta.lst")], dtype="float16")
    cb = SeedTTSEvalCallback([str(corpus / "seedtts/en/meta.lst")], asr="none", sim="none", limit=2, max_len=4,
                             timesteps=2, dtype="int8")
    trainer = _trainer(tmp_path, 3)
    cb.setup(trainer, module, "fit")
    calls = []
    forward = Int8Linear.forward
    monkeypatch.setattr(Int8Linear, "forward", lambda self, x: calls.append(1) or forward(self, x))
    cb.evaluate(trainer, module)
    assert calls  # generated with int8 weights
    m = json.loads((tmp_path / "eval/en/step_0000003/metrics.json").read_text(encoding="utf-8"))
    assert m["generation"]["dtype"] == "int8" and m["n_generated"] == 2
    after = module.state_dict()  # the training weights are untouched
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not any(isinstance(mod, Int8Linear) for mod in module.modules())
    assert len(module.tts_model().__dict__["_prompt_cache"]) == 2  # the prompts' latents, kept for the next one


def test_callback_with_several_seeds_logs_the_mean_and_keeps_each_seed(trained, tmp_path):
    from callbacks.evaluation import SeedTTSEvalCallback

    run, corpus = trained
    module = _trained_module(run)
    testset = [str(corpus / "seedtts/en/meta.lst")]
    with pytest.raises(ValueError, match="distinct seeds"):
        SeedTTSEvalCallback(testset, seeds=[1, 1])
    cb = SeedTTSEvalCallback(testset, asr="none", sim="resemblyzer", limit=2, max_len=4, timesteps=2, seeds=[0, 1])
    trainer = _trainer(tmp_path, 4)
    cb.setup(trainer, module, "fit")
    values = cb.evaluate(trainer, module)["en"]
    step = tmp_path / "eval/en/step_0000004"
    m = json.loads((step / "metrics.json").read_text(encoding="utf-8"))
    per_seed = [json.loads((step / f"seed_{s}/metrics.json").read_text(encoding="utf-8")) for s in (0, 1)]
    assert [p["generation"]["seed"] for p in per_seed] == [0, 1] and all(p["n_generated"] == 2 for p in per_seed)
    assert m["seeds"] == [0, 1] and m["sim"] == pytest.approx((per_seed[0]["sim"] + per_seed[1]["sim"]) / 2, abs=1e-4)
    assert m["intervals"]["sim"]["low"] <= m["sim"] <= m["intervals"]["sim"]["high"]
    assert values["eval/en/sim"] == m["sim"] and m["wer"] is None


@pytest.mark.slow
def test_callback_under_ddp_shards_generation_and_rank_zero_scores(tts_assets):
    root, corpus, vae_dir = tts_assets
    args = tts_overrides(root, corpus, vae_dir, steps=2) + callback_overrides(corpus) + [
        "trainer.strategy=ddp", "trainer.devices=2", "trainer.accelerator=cpu", f"run.root={root / 'ddp_eval'}"]
    start = time.time()
    out = subprocess.run([sys.executable, "-m", "voxlab.cli.train", "--exp", "d256s9", "--scale", "tiny", *args],
                         capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    print(f"DDP (2 processes) 2 steps + evaluation: {time.time() - start:.1f} s")
    [run] = sorted((root / "ddp_eval" / "d256s9").iterdir())
    step_dir = run / "eval" / "en" / "step_0000002"
    m = json.loads((step_dir / "metrics.json").read_text(encoding="utf-8"))
    # rank zero generates utterance 0 only, rank 1 utterance 1: both were gathered and scored
    assert m["n_utts"] == 2 and m["n_generated"] == 2 and m["sim"] is not None
    assert len(list((step_dir / "wavs").glob("*.wav"))) == 2
    with (run / "csv" / "metrics.csv").open(encoding="utf-8") as f:
        assert sum(1 for r in csv.DictReader(f) if r.get("eval/en/sim")) == 1
