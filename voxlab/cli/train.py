"""`make train EXP=... [SCALE=...] [ARGS="k=v ..."] [RESUME=run folder or ckpt]`.

Builds the run folder, loggers, callbacks and Trainer from the resolved config, then fits the
LightningModule and DataModule named by `module._target_` and `datamodule._target_` (both take
the whole config; the module also the pieces it asks for, built here: voxlab.cli.pieces). A failing run closes its loggers and records its state in `status.json`.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from voxlab.config import (ConfigError, build, check_targets, check_values, compose, find_experiment, instantiate, load_run_config,
                           parse_overrides, resolve, to_yaml, validate_layer)
from callbacks.line_progress import progress_callback
from callbacks.run_folder import AtomicCheckpointIO, GracefulStop, RngState, RunFolder
from datamodules.corpus.build import build_corpus
from datamodules.latents import CacheError
from datamodules.manifest import ManifestError
from datamodules.shards.format import ShardError
from lightning_modules.nonfinite import NonFiniteLoss, SkipLimit
from models.lora import LoRAConfigError
from voxlab.checkpoint import CheckpointError, check_architecture, read_config_file
from voxlab.cli.pieces import build_module
from voxlab.cli.init_model import resolve_init
from voxlab.cli.model_size import check_model_size
from voxlab.locks import FolderLock, FolderLocked
from voxlab.loggers import build_loggers
from voxlab.runs import (RUN_DIR_ENV, RunFolderError, checkpoint_dir, checkpoint_step, claim_run_dir, folder_entries,
                         is_main_process, planned_run_dir, remove_new_entries, remove_stale_temporaries, resolve_resume,
                         run_lock, write_record, write_status)


class TrainingInterrupted(KeyboardInterrupt):
    """A run stopped by SIGTERM / SIGINT after saving its checkpoint (a sweep stops too)."""


# what `make train` prints as one line (exit status 2): bad settings, files or folders, named
USER_ERRORS = (ConfigError, FileNotFoundError, ManifestError, CheckpointError, FolderLocked, RunFolderError,
               CacheError, ShardError, LoRAConfigError)


class StartFailed(RuntimeError):
    """fit failed before its first step (a dataloader, a setting Lightning refuses): nothing of the
    run was changed. `make train` prints it as one line; $VOXLAB_TRACEBACK=1 prints the traceback too."""


def check_saved_config(saved: dict | None, source: Path) -> None:
    """A saved config (a run's config.yaml or a checkpoint's `voxlab_config`) may only hold keys
    this version's schema knows: a key from a newer or other version would be silently ignored."""
    if not saved or not saved.get("experiment"):
        return
    try:
        find_experiment(saved["experiment"])
    except ConfigError:
        return  # an experiment file outside experiments/ (given by path): no schema to compare with
    current = OmegaConf.to_container(compose(saved["experiment"], saved.get("scale")))
    validate_layer(current, {k: v for k, v in saved.items() if k not in ("experiment", "scale", "overrides")},
                   f"{source} (saved config)")


@dataclass
class Plan:
    """What a `make train` will do, decided before anything is written: the config, the run
    folder it continues (None: a new version folder, created once everything validated), the
    checkpoint it starts from, the run it branches from, and the lock it holds."""
    cfg: DictConfig
    run_dir: Path | None = None
    ckpt: Path | None = None
    branch_of: Path | None = None
    lock: FolderLock | None = None

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()


def prepare(exp: str | None, scale: str | None, overrides: list[str], resume: str | None = None) -> Plan:
    """Validate the config (and for a resume the saved config, the checkpoint and the overrides).
    Reads only; a run continued in place is locked first, so no other process writes it meanwhile."""
    if not resume:
        if not exp:
            raise ConfigError("EXP is required (or RESUME=<run folder or checkpoint>)")
        cfg = resolve_init(compose(exp, scale, overrides))  # init.model: voxlab/cli/init_model.py
        check_targets(cfg)
        check_model_size(cfg)  # before the data, the VAE or any allocation
        ensure_embedded_corpus(cfg)
        return Plan(cfg)
    run_dir, ckpt, branch = resolve_resume(resume)
    plan = Plan(None, None if branch else run_dir, ckpt, run_dir if branch else None)
    if not branch and is_main_process():  # rank zero owns the run folder
        plan.lock = run_lock(run_dir).acquire()
    try:
        saved = OmegaConf.to_container(load_run_config(run_dir))
        check_saved_config(saved, run_dir / "config.yaml")
        if ckpt is not None:
            check_saved_config(read_config_file(ckpt), ckpt)
        layer = parse_overrides(overrides)
        validate_layer(saved, layer, "command-line override")
        plan.cfg = resolve(OmegaConf.merge(OmegaConf.create(saved), OmegaConf.create(layer)))
        check_values(plan.cfg)
        check_targets(plan.cfg)
        check_model_size(plan.cfg)
        if exp and exp != plan.cfg.experiment:
            raise ConfigError(f"RESUME={resume} is a run of {plan.cfg.experiment!r}, not of EXP={exp!r}")
    except BaseException:
        plan.release()
        raise
    return plan


def ensure_embedded_corpus(cfg: DictConfig) -> None:
    """At tiny scale on the default corpus folder, a fresh clone has no data yet: build the
    embedded corpus there (what `make data` does, about 10 s) instead of stopping."""
    root = Path(OmegaConf.select(cfg, "data.root") or "")
    if cfg.scale != "tiny" or root != Path("data/corpus") or Path(cfg.data.train_manifest).is_file():
        return
    print(f"[train] {cfg.data.train_manifest} is missing: building the embedded corpus in {root} first (make data)")
    build_corpus(root)


class _DryTrainer:
    """The trainer as `configure_optimizers` sees it before `fit`: the data's length is not known
    yet, so a schedule sized by it gets `max_steps` (at least 1); everything else is the trainer's."""

    def __init__(self, trainer):
        self._trainer = trainer

    def __getattr__(self, name):
        return getattr(self._trainer, name)

    @property
    def estimated_stepping_batches(self) -> int:
        return max(int(self._trainer.max_steps), 1)


def check_optimizers(module, trainer, cfg: DictConfig) -> None:
    """Build the module's optimizers and schedules once, dry, and drop them: a bad `optim` value
    (a negative learning rate, betas out of range) is one line naming the settings before anything
    is written, not a traceback from inside `fit` after config.yaml changed."""
    module.trainer = _DryTrainer(trainer)
    try:
        module.configure_optimizers()
    except Exception as err:  # torch raises ValueError; a schedule may raise anything
        flat = _flatten(OmegaConf.to_container(cfg.optim, resolve=True) if cfg.get("optim") else {}, "optim")
        given = ", ".join(f"{k}={v}" for k, v in flat.items())
        raise ConfigError(f"the optimizer settings were refused: {str(err).splitlines()[0]} ({given})") from None
    finally:
        module.trainer = None


def _flatten(node, prefix: str) -> dict:
    if not isinstance(node, dict):
        return {prefix: node}
    return {k: v for key, value in node.items() for k, v in _flatten(value, f"{prefix}.{key}").items()}


def discard_new_run(run_dir: Path, existed: bool) -> None:
    """A new run that failed before its first step has nothing to resume: its folder (made by this
    command; call with its lock held) goes, or is emptied when it was the user's empty VOXLAB_RUN_DIR."""
    if existed:
        for child in run_dir.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
    print(f"[train] {run_dir} removed: the run failed before its first step")


def build_trainer(cfg: DictConfig, run_dir: Path, extra_callbacks=()):
    import lightning as L
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint

    step_ckpt = ModelCheckpoint(dirpath=checkpoint_dir(run_dir), filename="step_{step:07d}",
                                auto_insert_metric_name=False, every_n_train_steps=cfg.run.checkpoint_every_steps,
                                save_top_k=cfg.run.keep_checkpoints, monitor="step", mode="max", save_last=True,
                                enable_version_counter=False)

    skip_limit = SkipLimit(OmegaConf.select(cfg, "nonfinite.max_skip_share", default=0.2),
                           OmegaConf.select(cfg, "nonfinite.min_batches", default=20))
    folder = RunFolder(run_dir)
    callbacks = [step_ckpt, LearningRateMonitor("step"), folder,
                 GracefulStop(run_dir), RngState(), skip_limit, *extra_callbacks]
    for node in (cfg.get("callbacks") or {}).values():
        if node is not None and node.get("_target_"):
            callbacks.append(instantiate(node))
    progress, show_bar = progress_callback()  # a bar on a terminal, plain lines in a log (`make demo > log`)
    callbacks.append(progress)
    loggers = build_loggers(cfg, run_dir)  # run.loggers: TensorBoard and CSV by default
    trainer_kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    try:
        return L.Trainer(default_root_dir=run_dir, logger=loggers, callbacks=callbacks,
                         plugins=[AtomicCheckpointIO(on_saved=folder.checkpoint_saved)], use_distributed_sampler=False,
                         enable_progress_bar=show_bar, **trainer_kwargs)
    except Exception as err:  # Lightning checks its options here (MisconfigurationException, ValueError...)
        given = ", ".join(f"trainer.{k}={v}" for k, v in trainer_kwargs.items())
        raise ConfigError(f"the trainer settings were refused: {str(err).splitlines()[0]} ({given})") from None


def train(exp: str | None, scale: str | None = None, overrides: list[str] = (), resume: str | None = None) -> Path:
    plan = prepare(exp, scale, list(overrides), resume)
    try:
        return _run(plan)
    finally:
        plan.release()


def _run(plan: Plan) -> Path:
    import lightning as L

    cfg, ckpt = plan.cfg, plan.ckpt
    existed = False  # whether a new run's folder was there before (an empty VOXLAB_RUN_DIR)
    main_process = is_main_process()
    # Everything is built (and so checked) before the run folder is created or written.
    L.seed_everything(int(cfg.seed), workers=True)

    datamodule = build(cfg, "datamodule")
    if hasattr(datamodule, "validate"):
        datamodule.validate()  # manifests read; the TTS data also pins its VAE in cfg (path + fingerprint)
    module = build_module(cfg, resuming=ckpt is not None, main_process=main_process)
    if ckpt is not None:
        check_architecture(module, ckpt)
    if plan.run_dir is None:  # a new version folder (a new run, or a branch of an older checkpoint)
        parent = plan.branch_of.parent if plan.branch_of else Path(cfg.run.root) / cfg.experiment
        while True:
            run_dir = planned_run_dir(parent.parent, parent.name)
            trainer = build_trainer(cfg, run_dir)
            check_optimizers(module, trainer, cfg)
            existed = run_dir.exists()  # an empty VOXLAB_RUN_DIR given by the user is theirs
            if claim_run_dir(run_dir):
                break
        if main_process:
            plan.lock = run_lock(run_dir).acquire()
    else:
        run_dir = plan.run_dir
        trainer = build_trainer(cfg, run_dir)
        check_optimizers(module, trainer, cfg)
        if main_process:
            remove_stale_temporaries(run_dir)
    status = write_status if main_process else (lambda *a, **k: None)  # rank zero owns the run folder

    def record_start(step: int = 0) -> None:
        if main_process:
            write_record(run_dir / "config.yaml", to_yaml(cfg))
            if plan.branch_of:
                write_record(run_dir / "branch.json", json.dumps(
                    {"from_run": str(plan.branch_of), "from_checkpoint": str(ckpt), "from_step": checkpoint_step(ckpt)},
                    indent=2))
        status(run_dir, "running", step=step)

    folder = next(c for c in trainer.callbacks if isinstance(c, RunFolder))
    folder.saved_step = checkpoint_step(ckpt) if ckpt else 0
    in_place = plan.run_dir is not None
    if in_place:  # a resume writes nothing until fit has built all it uses (optimizer, checkpoint, data)
        folder.at_start = record_start
        found = folder_entries(run_dir)
    else:
        try:
            record_start()
        except RunFolderError:  # a full disk: the new folder holds at most our own partial records
            if main_process:
                discard_new_run(run_dir, existed)
            raise
    where = f", resuming from {ckpt}" if ckpt else ""
    if plan.branch_of:
        where = (f", branching from {ckpt} (step {checkpoint_step(ckpt)}; {plan.branch_of} keeps its newer "
                 "checkpoints)")
    print(f"[train] {cfg.experiment} (scale {cfg.scale}) -> {run_dir}{where}")
    previous_env = os.environ.get(RUN_DIR_ENV)
    os.environ[RUN_DIR_ENV] = str(run_dir)  # processes Lightning launches for DDP join this run folder
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt) if ckpt else None)
    except BaseException as err:
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        for logger in trainer.loggers:
            logger.finalize("failed")
        interrupted = isinstance(err, (SIGTERMException, KeyboardInterrupt, SystemExit))
        if in_place and not folder.started:  # the resume never started: the run folder stays as it was
            if main_process:
                remove_new_entries(run_dir, found)
        elif not folder.started and not interrupted:  # a new run that failed before its first step
            if main_process:
                discard_new_run(run_dir, existed)
        else:
            try:
                status(run_dir, "interrupted" if interrupted else "failed", step=folder.saved_step,
                       trained_to=trainer.global_step, **({} if interrupted else {"error": repr(err)[:2000]}))
            except (OSError, RunFolderError) as status_err:  # a full disk must not hide what stopped the run
                print(f"[train] could not update {run_dir / 'status.json'}: {status_err}", file=sys.stderr)
        if interrupted:
            raise TrainingInterrupted(f"{cfg.experiment} stopped at step {trainer.global_step}; "
                                      f"continue with: make train RESUME={run_dir}") from None
        if not folder.started and isinstance(err, Exception) and not isinstance(err, (*USER_ERRORS, NonFiniteLoss)):
            kept = f"{run_dir} is as it was" if in_place else "no run folder was left"
            first = (str(err).strip().splitlines() or [""])[0]
            raise StartFailed(f"the run could not start: {type(err).__name__}: {first} ({kept}; "
                              "VOXLAB_TRACEBACK=1 shows where)") from err
        raise
    finally:
        if previous_env is None:
            os.environ.pop(RUN_DIR_ENV, None)
        else:
            os.environ[RUN_DIR_ENV] = previous_env
    status(run_dir, "finished", step=trainer.global_step)
    print(f"[train] finished at step {trainer.global_step}: {run_dir}")
    return run_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", default=None, help="experiment name (see `make help` / experiments/)")
    parser.add_argument("--scale", default=None, help="scale preset: tiny | paper")
    parser.add_argument("--resume", default=None, help="run folder or checkpoint to continue")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides")
    args = parser.parse_args(argv)
    try:
        train(args.exp or None, args.scale or None, args.overrides, args.resume or None)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except NonFiniteLoss as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except TrainingInterrupted as err:
        print(f"[train] {err}", file=sys.stderr)
        return 130
    except StartFailed as err:
        if os.environ.get("VOXLAB_TRACEBACK"):
            traceback.print_exception(err.__cause__ or err)
        print(f"error: {err}", file=sys.stderr)
        return 1
    except Exception:
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
