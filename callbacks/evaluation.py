"""Seed-TTS-Eval during training: generate a small subset of each test set with the current model,
score it, log `eval/<set>/wer` and `eval/<set>/sim`, and write `<run>/eval/<set>/step_<N>/`
(metrics.json, per_utt.csv, summary.md, wavs/: the folder format of `python -m eval`).

Turned on from the config (experiments/tts/base.yaml defines every key, `_target_: null` = off):

    make train EXP=d256s9 SCALE=tiny ARGS="callbacks.seedtts_eval._target_=callbacks.evaluation.SeedTTSEvalCallback \\
        callbacks.seedtts_eval.limit=8 callbacks.seedtts_eval.every_n_steps=1000"

When: after each validation (`every_n_steps: null`) or every N optimizer steps.
Seeds: `seeds: null` generates with `seed`; a list (`[0, 1, 2]`) evaluates each into `step_<N>/seed_<k>/`
and writes the mean with its 95% bootstrap interval into `step_<N>/` (eval/seeds.py), which is what is logged.
Precision: `dtype: null` generates with the training weights as they are; `bfloat16` or `int8`
with a copy of them in that precision made at each evaluation (as `make eval ARGS="--dtype ..."`;
on a 2-core CPU, batched int8 generation is about 10x the official's one-by-one, fp32 about 4x:
docs/benchmarks.md, Generation speed), recorded in metrics.json's `generation`.
ASR: the policy of `make eval --asr` (eval.backends.asr_skip_reason), here `auto` by default: `auto`
scores WER when the ASR weights are there and otherwise records why it is missing (WER null, SIM
still scored); `required` fails at the start of training when they are missing; `none` never runs ASR. The test sets and backend weights are checked in `setup`, before training.

Under DDP: generation is sharded (rank r makes utterances r, r+W, ...), the waveforms are gathered
on rank zero, which alone scores, writes and logs, while the others wait in the broadcast of the
result (which also carries an error, so every rank raises together instead of hanging). The cost is
bounded by `limit` utterances per set: keep it small enough to finish well within the process
group's timeout (30 min by default). Each rank's RNG state is restored afterwards, so an evaluation
changes nothing in training, and every module gets back its train/eval mode.
"""
from __future__ import annotations

import random
import shutil
import sys
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch

from eval.backends import ASR_POLICIES, Backends, EvalConfig, asr_skip_reason
from eval.generate import DTYPES, generate_items
from eval.run import evaluate, log_metrics, preflight
from eval.seeds import evaluate_seeds
from eval.testset import testset_name
from voxlab.audio import save_audio


@dataclass
class _TestSet:
    name: str
    meta: Path
    items: list
    skip_asr: str | None  # why WER is not scored on this set (None: it is)


@contextmanager
def _isolated_rng(device: torch.device):
    """Generation and scoring must not move training's random streams (exact resume)."""
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        yield
    random.setstate(py_state)
    np.random.set_state(np_state)


def _gather_to_zero(trainer, obj):
    """A list of every rank's `obj` on rank zero (None elsewhere); [obj] on one process."""
    import torch.distributed as dist

    if trainer.world_size == 1 or not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out = [None] * trainer.world_size if trainer.is_global_zero else None
    dist.gather_object(obj, out, dst=0)
    return out


class SeedTTSEvalCallback(L.Callback):
    def __init__(self, testset, every_n_steps: int | None = None, limit: int | None = 8, sim: str = "resemblyzer",
                 asr: str = "auto", whisper: str = "auto", paraformer: str | None = None,
                 wavlm: str | None = None, ecapa: str | None = None, wespeaker: str | None = None,
                 normalization: str = "seedtts", cfg: float = 2.0, timesteps: int = 10, temperature: float = 1.0,
                 seed: int = 0, max_len: int = 4096, batch_size: int = 0, memory_gb: float = 2.0,
                 device: str | None = None, dtype: str | None = None, seeds: list[int] | None = None):
        if asr not in ASR_POLICIES:
            raise ValueError(f"SeedTTSEvalCallback: asr must be one of {ASR_POLICIES}, got {asr!r}")
        if every_n_steps is not None and int(every_n_steps) < 1:
            raise ValueError(f"SeedTTSEvalCallback: every_n_steps must be >= 1 or null, got {every_n_steps}")
        self.testsets = [str(testset)] if isinstance(testset, (str, Path)) else [str(t) for t in testset]
        if not self.testsets:
            raise ValueError("SeedTTSEvalCallback: no test set given")
        self.every_n_steps = None if every_n_steps is None else int(every_n_steps)
        self.limit = None if limit is None else int(limit)
        self.eval_config = EvalConfig(asr=asr, whisper=whisper,
                                      paraformer=paraformer, sim=sim, wavlm=wavlm, ecapa=ecapa,
                                      wespeaker=wespeaker, normalization=normalization)
        self.eval_config.validate()
        # several seeds: each evaluated into step_<N>/seed_<k>/, step_<N>/ gets the mean and its interval
        self.seeds = [int(seed)] if seeds is None else [int(s) for s in seeds]
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"SeedTTSEvalCallback: seeds must be null or distinct seeds, got {seeds!r}")
        self.settings = {"cfg": float(cfg), "timesteps": int(timesteps), "temperature": float(temperature),
                         "seed": self.seeds[0], "max_len": int(max_len)}
        self.batch_size, self.memory_gb, self.device = int(batch_size), float(memory_gb), device
        if dtype is not None and dtype not in DTYPES:
            raise ValueError(f"SeedTTSEvalCallback: dtype must be null or one of {DTYPES}, got {dtype!r}")
        self.dtype = dtype
        self.sets: list[_TestSet] = []
        self.backends = None        # rank zero, loaded at the first evaluation and kept
        self.last_step: int | None = None

    # ---- checks before training ------------------------------------------------------------------
    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "fit" or self.sets:
            return

        if not hasattr(pl_module, "tts_model"):
            raise TypeError(f"SeedTTSEvalCallback needs a module with tts_model() (the TTS module), "
                            f"not {type(pl_module).__name__}")
        names = set()
        for testset in self.testsets:
            # the test set and the weights: `required` fails here on missing ASR weights, as `make eval` does
            meta, items, langs, _, _ = preflight(testset, self.eval_config, limit=self.limit)
            name = testset_name(meta)
            if name in names:
                raise ValueError(f"SeedTTSEvalCallback: two test sets named {name!r} ({self.testsets})")
            names.add(name)
            reason = asr_skip_reason(self.eval_config, sorted(set(langs.values())))
            if reason and self.eval_config.asr == "auto" and trainer.is_global_zero:
                print(f"[seedtts_eval] {name}: WER unavailable: {reason}", file=sys.stderr)
            self.sets.append(_TestSet(name, meta, items, reason))

    # ---- when --------------------------------------------------------------------------------------
    def on_validation_end(self, trainer, pl_module) -> None:
        if self.every_n_steps is None and not trainer.sanity_checking:
            self.evaluate(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self.every_n_steps and step > 0 and step % self.every_n_steps == 0:
            self.evaluate(trainer, pl_module)

    # ---- what --------------------------------------------------------------------------------------
    def evaluate(self, trainer, pl_module) -> dict[str, dict]:
        """Evaluate every test set at the current step (once per step); returns the logged scalars
        per set (on every rank)."""
        step = int(trainer.global_step)
        if not self.sets or step == self.last_step:  # gradient accumulation repeats a step's hooks
            return {}
        self.last_step = step
        modes = {m: m.training for m in pl_module.modules()}
        results = {}
        try:
            with _isolated_rng(pl_module.device):
                for ts in self.sets:
                    results[ts.name] = self._evaluate_set(trainer, pl_module, ts, step)
        finally:
            for m, training in modes.items():  # exactly as before, module by module
                m.training = training
        return results

    def _evaluate_set(self, trainer, pl_module, ts: _TestSet, step: int) -> dict:
        mine = ts.items[trainer.global_rank::trainer.world_size]
        try:
            model = self._generation_model(pl_module)
            wavs, error = {seed: generate_items(model, mine, {**self.settings, "seed": seed}, self.batch_size,
                                                self.memory_gb) for seed in self.seeds}, None
        except Exception as err:  # noqa: BLE001 - reported on every rank below, not left to hang rank zero
            traceback.print_exc()
            wavs, error = {}, f"rank {trainer.global_rank}: generation failed: {type(err).__name__}: {err}"
        gathered = _gather_to_zero(trainer, (wavs, error))
        values = {}
        if trainer.is_global_zero:
            errors = [e for _, e in gathered if e]
            if not errors:
                try:
                    wavs = {seed: {u: w for part, _ in gathered for u, w in part.get(seed, {}).items()}
                            for seed in self.seeds}
                    values = self._score(trainer, ts, step, wavs, pl_module.device)
                except Exception as err:  # noqa: BLE001
                    traceback.print_exc()
                    errors.append(f"scoring failed: {type(err).__name__}: {err}")
            error = "; ".join(errors) or None
        # the other ranks wait here while rank zero scores: the result (or the error) reaches all
        error, values = trainer.strategy.broadcast((error, values), src=0)
        if error:
            raise RuntimeError(f"SeedTTSEvalCallback at step {step} on {ts.meta}: {error}")
        for key, value in values.items():  # so ModelCheckpoint(monitor="eval/en/wer") can use them
            trainer.callback_metrics[key] = torch.tensor(value)
        return values

    def _generation_model(self, pl_module):
        """The training weights themselves (`dtype` null), or a copy of them in `dtype`, made at each
        evaluation since the weights change between them (CPU: packed; the AudioVAE and the kept
        prompt latents shared with the training model's wrapper)."""
        model = pl_module.tts_model()
        if self.dtype is None:
            return model
        with torch.no_grad():
            copy = model.with_precision(self.dtype)
        return copy.optimize() if copy.device.type == "cpu" else copy

    def _score(self, trainer, ts: _TestSet, step: int, wavs: dict, device: torch.device) -> dict[str, float]:
        """Rank zero: write the wavs, score them, write the step folder, log the scalars."""
        if self.backends is None:  # the module's device is known now (not yet in `setup`)
            self.eval_config.device = self.device or str(device)
            self.backends = Backends(self.eval_config)
        out_dir = Path(trainer.default_root_dir) / "eval" / ts.name / f"step_{step:07d}"
        if out_dir.exists():  # a resumed run reaching this step again: its wavs are not this model's
            shutil.rmtree(out_dir)

        def writer(seed_wavs):
            def write(items, wavs_dir):
                for it in items:
                    save_audio(Path(wavs_dir) / f"{it.utt}.wav", seed_wavs[it.utt].wav, seed_wavs[it.utt].sample_rate)
                return {it.utt: seed_wavs[it.utt].outcome for it in items}  # the runaway flag reads these
            return write

        generation = {"source": "training", "step": step, **self.settings, "seeding": "per-utterance"}
        if self.dtype is not None:
            generation["dtype"] = self.dtype
        log = lambda msg: print(f"[seedtts_eval] {ts.name} step {step}: {msg}", file=sys.stderr)  # noqa: E731

        def one_seed(seed, folder, gen, overwrite=False):
            return evaluate(ts.meta, None, folder, backends=self.backends, limit=self.limit, generation=gen,
                            generate_fn=writer(wavs[seed]), skip_asr=ts.skip_asr, overwrite=overwrite, log=log)

        if len(self.seeds) == 1:
            metrics = one_seed(self.seeds[0], out_dir, generation)
        else:
            metrics = evaluate_seeds(out_dir, self.seeds, generation, one_seed, log=log)
        values = {k: float(v) for k, v in log_metrics(metrics, ts.name).items()}
        for logger in trainer.loggers:
            logger.log_metrics(values, step=step)
        return values
