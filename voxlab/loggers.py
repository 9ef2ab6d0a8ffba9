"""Loggers of a run folder, chosen by `run.loggers` (build_loggers). Lightning's CSVLogger deletes an
existing metrics.csv when a run is resumed into the same folder; ours appends to it, so no logged
history is ever lost."""
from __future__ import annotations

import csv
import os

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from voxlab.config import ConfigError


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        if os.path.isfile(self.metrics_file_path):  # keep the old rows and their columns
            with open(self.metrics_file_path, newline="") as f:
                self.metrics_keys = sorted(next(csv.reader(f), []))


class AppendingCSVLogger(CSVLogger):
    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


LOGGERS = ("tensorboard", "csv", "wandb", "mlflow")
_PACKAGES = {"wandb": "wandb", "mlflow": "mlflow"}


def build_loggers(cfg, run_dir):
    """The loggers named in `run.loggers` (default TensorBoard and CSV), all writing under the run
    folder. W&B and MLflow need their package installed; with `run.offline` (default true) W&B runs
    offline (files in <run>/wandb, `wandb sync` uploads them later) and MLflow writes a local file
    store (<run>/mlruns); with `run.offline=false` they use their own environment settings
    (WANDB_PROJECT / WANDB_MODE..., MLFLOW_TRACKING_URI)."""
    import importlib.util
    from pathlib import Path

    run = cfg.run
    names = list(run.get("loggers") or [])
    if not names:
        raise ConfigError("run.loggers is empty: name at least one of "
                          f"{list(LOGGERS)} (the metrics and the learning-rate monitor need one)")
    unknown = [n for n in names if n not in LOGGERS]
    if unknown:
        raise ConfigError(f"run.loggers: unknown logger(s) {unknown}; choose from {list(LOGGERS)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"run.loggers: {names} names a logger twice")
    missing = [n for n in names if n in _PACKAGES and importlib.util.find_spec(_PACKAGES[n]) is None]
    if missing:
        raise ConfigError(f"run.loggers: {missing} named but not installed: `.venv/bin/pip install "
                          f"{' '.join(_PACKAGES[n] for n in missing)}`, or drop them from run.loggers")
    run_dir, offline = Path(run_dir), bool(run.get("offline", True))
    name = f"{cfg.experiment}/{run_dir.name}"
    out = []
    for n in names:
        if n == "tensorboard":
            from lightning.pytorch.loggers import TensorBoardLogger
            out.append(TensorBoardLogger(run_dir, name="tensorboard", version="", default_hp_metric=False))
        elif n == "csv":
            out.append(AppendingCSVLogger(run_dir, name="csv", version=""))
        elif n == "wandb":
            from lightning.pytorch.loggers import WandbLogger
            out.append(WandbLogger(name=name, save_dir=str(run_dir), offline=offline,
                                   project=os.environ.get("WANDB_PROJECT", "voxlab")))
        else:
            from lightning.pytorch.loggers import MLFlowLogger
            uri = (run_dir / "mlruns").resolve().as_uri() if offline else os.environ.get("MLFLOW_TRACKING_URI")
            out.append(MLFlowLogger(experiment_name=str(cfg.experiment), run_name=run_dir.name, tracking_uri=uri))
    return out
