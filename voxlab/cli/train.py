"""`make train EXP=... [SCALE=...] [ARGS="k=v ..."] [RESUME=run folder or ckpt]`.

Builds the run folder, loggers, callbacks and Trainer from the resolved config, then fits the
LightningModule and DataModule named by `module._target_` and `datamodule._target_` (both take
the whole config; the module also the pieces it asks for, built here: voxlab.cli.pieces). A failing run closes its loggers and records its state in `status.json`.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from voxlab.config import (ConfigError, build, compose, find_experiment, instantiate, load_run_config,
                           parse_overrides, resolve, to_yaml, validate_layer)
from datamodules.manifest import ManifestError
from voxlab.checkpoint import CheckpointError, read_config_file
from voxlab.cli.pieces import build_module
from voxlab.cli.init_model import resolve_init
from voxlab.runs import RUN_DIR_ENV, is_main_process, resolve_resume, shared_run_dir, write_status


class TrainingInterrupted(KeyboardInterrupt):
    """A run stopped by SIGTERM / SIGINT after saving its checkpoint (a sweep stops too)."""


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


def prepare(exp: str | None, scale: str | None, overrides: list[str], resume: str | None = None
            ) -> tuple[DictConfig, Path, Path | None]:
    """Config, run folder and checkpoint to resume from. Nothing is built or written for a config
    that does not validate."""
    if resume:
        run_dir, ckpt = resolve_resume(resume)
        saved = OmegaConf.to_container(load_run_config(run_dir))
        check_saved_config(saved, run_dir / "config.yaml")
        check_saved_config(read_config_file(ckpt), ckpt)
        layer = parse_overrides(overrides)
        validate_layer(saved, layer, "command-line override")
        cfg = resolve(OmegaConf.merge(OmegaConf.create(saved), OmegaConf.create(layer)))
        if exp and exp != cfg.experiment:
            raise ConfigError(f"RESUME={resume} is a run of {cfg.experiment!r}, not of EXP={exp!r}")
        return cfg, run_dir, ckpt
    if not exp:
        raise ConfigError("EXP is required (or RESUME=<run folder or checkpoint>)")
    cfg = resolve_init(compose(exp, scale, overrides))  # init.model: voxlab/cli/init_model.py
    run_dir = shared_run_dir(cfg.run.root, cfg.experiment)
    return cfg, run_dir, None


def build_trainer(cfg: DictConfig, run_dir: Path, extra_callbacks=()):
    import lightning as L
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint

    from callbacks.run_folder import AtomicCheckpointIO, GracefulStop, RngState, RunFolder
    from callbacks.line_progress import progress_callback
    from voxlab.loggers import build_loggers

    step_ckpt = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="step_{step:07d}",
                                auto_insert_metric_name=False, every_n_train_steps=cfg.run.checkpoint_every_steps,
                                save_top_k=cfg.run.keep_checkpoints, monitor="step", mode="max", save_last=True,
                                enable_version_counter=False)
    callbacks = [step_ckpt, LearningRateMonitor("step"), RunFolder(run_dir),
                 GracefulStop(run_dir), RngState(), *extra_callbacks]
    for node in (cfg.get("callbacks") or {}).values():
        if node is not None and node.get("_target_"):
            callbacks.append(instantiate(node))
    progress, show_bar = progress_callback()  # a bar on a terminal, plain lines in a log (`make demo > log`)
    callbacks.append(progress)
    loggers = build_loggers(cfg, run_dir)  # run.loggers: TensorBoard and CSV by default
    trainer_kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    return L.Trainer(default_root_dir=run_dir, logger=loggers, callbacks=callbacks,
                     plugins=[AtomicCheckpointIO()], use_distributed_sampler=False,
                     enable_progress_bar=show_bar, **trainer_kwargs)


def train(exp: str | None, scale: str | None = None, overrides: list[str] = (), resume: str | None = None) -> Path:
    cfg, run_dir, ckpt = prepare(exp, scale, list(overrides), resume)
    import lightning as L

    main_process = is_main_process()
    if main_process:
        (run_dir / "config.yaml").write_text(to_yaml(cfg))
    L.seed_everything(int(cfg.seed), workers=True)
    datamodule = build(cfg, "datamodule")
    module = build_module(cfg, resuming=ckpt is not None, main_process=main_process)
    trainer = build_trainer(cfg, run_dir)
    print(f"[train] {cfg.experiment} (scale {cfg.scale}) -> {run_dir}" + (f", resuming from {ckpt}" if ckpt else ""))
    status = write_status if main_process else (lambda *a, **k: None)  # rank zero owns the run folder
    status(run_dir, "running", step=0)
    previous_env = os.environ.get(RUN_DIR_ENV)
    os.environ[RUN_DIR_ENV] = str(run_dir)  # processes Lightning launches for DDP join this run folder
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt) if ckpt else None)
    except BaseException as err:
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        for logger in trainer.loggers:
            logger.finalize("failed")
        if isinstance(err, (SIGTERMException, KeyboardInterrupt, SystemExit)):
            status(run_dir, "interrupted", step=trainer.global_step)
            raise TrainingInterrupted(f"{cfg.experiment} stopped at step {trainer.global_step}; "
                                      f"continue with: make train RESUME={run_dir}") from None
        status(run_dir, "failed", step=trainer.global_step, error=repr(err)[:2000])
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
    except (ConfigError, FileNotFoundError, ManifestError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except TrainingInterrupted as err:
        print(f"[train] {err}", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
