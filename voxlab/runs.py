"""Run folders: `runs/<experiment>/version_<N>/`, never overwritten.

A run folder holds `config.yaml` (the resolved config), `status.json`, `checkpoints/`
(`last.ckpt` and step checkpoints), `tensorboard/`, `csv/` and `eval/`; a branch (a run continued
from an older checkpoint of another) also `branch.json` (where it came from).

One process at a time writes a run folder: it holds `<experiment>/.<version>.lock` beside it
(`run_lock`; outside the folder, so a resume that fails validation leaves the folder exactly as
it was). New folders are created only after the run's config, data and trainer validated.
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from voxlab.checkpoint import CheckpointError, load_checkpoint, read_weights_file
from voxlab.config import ConfigError, load_run_config
from voxlab.locks import FolderLock
from voxlab.safe_io import write_text_atomic

VERSION_RE = re.compile(r"^version_(\d+)$")


RUN_DIR_ENV = "VOXLAB_RUN_DIR"

# The one spelling of where a run keeps its checkpoints: every command, callback and loader asks here
CHECKPOINT_DIR = "checkpoints"
LAST_NAME = "last.ckpt"
LAST_CHECKPOINT = f"{CHECKPOINT_DIR}/{LAST_NAME}"  # for messages


def checkpoint_dir(run_dir: str | Path) -> Path:
    """The folder of a run's checkpoints (the last one and the step checkpoints)."""
    return Path(run_dir) / CHECKPOINT_DIR


def last_checkpoint(run_dir: str | Path) -> Path:
    """The state a run saved at the end of training (or at a graceful stop); it may not exist yet."""
    return checkpoint_dir(run_dir) / LAST_NAME


def has_last_checkpoint(path: str | Path) -> bool:
    """`path` is a run folder with its last checkpoint on disk."""
    return Path(path).is_dir() and last_checkpoint(path).is_file()


class RunFolderError(ValueError):
    """A run folder that cannot be created or continued, named in the message."""


def is_main_process() -> bool:
    """Rank zero of a multi-process launch (Lightning's own launcher, torchrun or SLURM), or no launch."""
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK"):
        if int(os.environ.get(var, 0) or 0) != 0:
            return False
    return True


def planned_run_dir(root: str | Path, experiment: str) -> Path:
    """The folder a new run of this process will use, not created yet: VOXLAB_RUN_DIR when set
    (rank zero sets it before Lightning launches the other ranks; torchrun / SLURM users set it
    for every rank), else the next free `version_<N>` (rank zero only)."""
    given = os.environ.get(RUN_DIR_ENV)
    if given:
        return Path(given)
    if not is_main_process():
        raise RuntimeError(f"a non-zero rank needs {RUN_DIR_ENV} (the run folder rank zero uses); "
                           "see the multi-node example in docs/multi-gpu.md")
    parent = Path(root) / experiment
    taken = [int(m.group(1)) for p in (parent.iterdir() if parent.is_dir() else ()) if (m := VERSION_RE.match(p.name))]
    return parent / f"version_{max(taken, default=-1) + 1}"


def claim_run_dir(path: Path) -> bool:
    """Create the planned folder; False when another run took that version first (mkdir is
    atomic: two runs never share one). A shared VOXLAB_RUN_DIR is created by rank zero and
    awaited by the other ranks."""
    shared = os.environ.get(RUN_DIR_ENV) == str(path)
    try:
        if shared and not is_main_process():
            deadline = time.time() + 120
            while not path.is_dir() and time.time() < deadline:
                time.sleep(0.5)
            if not path.is_dir():
                raise FileNotFoundError(f"{RUN_DIR_ENV}={path} was not created by rank zero")
            return True
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir()
        except FileExistsError:
            if not shared:
                return False
            # VOXLAB_RUN_DIR naming a folder that exists: a new run takes only an empty one, never a
            # finished run or a user's folder (it would write over their config and checkpoints)
            held = sorted(p.name for p in path.iterdir()) if path.is_dir() else [path.name]
            if held:
                shown = ", ".join(held[:5]) + (" ..." if len(held) > 5 else "")
                raise RunFolderError(f"{RUN_DIR_ENV}={path} already holds {shown}: a new run never writes into a "
                                     f"folder it did not create; continue that run with RESUME={path}, or set "
                                     f"{RUN_DIR_ENV} to a new folder") from None
        return True
    except PermissionError as err:
        raise RunFolderError(f"cannot create the run folder {path}: {err.strerror} (is {path.parent} read-only? "
                             "set run.root to a folder you can write)") from None
    except OSError as err:
        raise RunFolderError(f"cannot create the run folder {path}: {err.strerror or err}") from None


def new_run_dir(root: str | Path, experiment: str) -> Path:
    """Create the next free version folder."""
    while True:
        path = planned_run_dir(root, experiment)
        if claim_run_dir(path):
            return path


def run_lock(run_dir: Path) -> FolderLock:
    """The lock of a run folder, a file beside it (`.version_0.lock`), keyed by the folder's real
    path (a symlink or `..` spelling names the same lock) and by the folder itself (FolderLock)."""
    run_dir = Path(os.path.realpath(run_dir))
    return FolderLock(run_dir, what="run folder", lock_file=run_dir.parent / f".{run_dir.name}.lock")


def list_runs(root: str | Path, experiment: str) -> list[Path]:
    parent = Path(root) / experiment
    if not parent.is_dir():
        return []
    runs = [p for p in parent.iterdir() if VERSION_RE.match(p.name)]
    return sorted(runs, key=lambda p: int(VERSION_RE.match(p.name).group(1)))


def find_run(root: str | Path, experiment: str, scale: str | None, overrides: list[str] | None = None,
             finished: bool = False, with_last: bool = False) -> Path | None:
    """The newest run of `experiment` under `root` made at `scale` (and with exactly `overrides`,
    when given); `finished`: only a finished one; `with_last`: only one with its last checkpoint.
    A run whose config.yaml cannot be read is passed over."""
    for run in reversed(list_runs(root, experiment)):
        try:
            saved = load_run_config(run)
        except ConfigError:
            continue
        same = saved.get("scale") == scale and (overrides is None or list(saved.get("overrides") or []) == list(overrides))
        usable = ((not finished or read_status(run).get("state") == "finished")
                  and (not with_last or has_last_checkpoint(run)))
        if same and usable:
            return run
    return None


def run_of_checkpoint(path: str | Path) -> Path:
    """The run folder a checkpoint file belongs to (`<run>/checkpoints/x.ckpt`, or beside it)."""
    path = Path(path)
    return path.parent.parent if path.parent.name == CHECKPOINT_DIR else path.parent


def remove_stale_temporaries(run_dir: Path) -> None:
    """Partial checkpoint files left by a process killed mid-write (call with the run's lock held:
    a live writer's temporary file is not stale)."""
    for stale in checkpoint_dir(run_dir).glob(".*.tmp*"):
        stale.unlink()


def folder_entries(folder: Path) -> set[Path]:
    """Every file and folder under `folder` (what a failed start compares against)."""
    return set(Path(folder).rglob("*"))


def remove_new_entries(folder: Path, before: set[Path]) -> None:
    """Undo what a resume that never started left (a logger's empty event file): remove what is
    under `folder` now but was not in `before`, deepest first. Call with the run's lock held."""
    for path in sorted(folder_entries(folder) - before, key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and not path.is_symlink():
            if not any(path.iterdir()):
                path.rmdir()
        else:
            path.unlink(missing_ok=True)


def write_record(path: Path, text: str) -> None:
    """A run's record (config.yaml, branch.json, status.json) written whole or not at all: a full
    disk leaves the previous file as it was (a torn config.yaml would make the run unresumable)."""
    try:
        write_text_atomic(path, text, fsync=True)
    except OSError as err:
        raise RunFolderError(f"{path}: could not be written ({err.strerror or err}): is the disk full, or a quota "
                             f"or file-size limit reached? The previous {Path(path).name} (if any) is untouched; "
                             "free space and run again") from None


def write_status(run_dir: Path, state: str, **extra) -> None:
    data = {"state": state, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra}
    write_record(Path(run_dir) / "status.json", json.dumps(data, indent=2))


def read_status(run_dir: Path) -> dict:
    path = Path(run_dir) / "status.json"
    return json.loads(path.read_text()) if path.is_file() else {"state": "unknown"}


def checkpoints_newest_first(run_dir: Path) -> list[Path]:
    """A run's checkpoints, the highest training step first (`last.ckpt` before a step checkpoint of
    its step): ordered by the step each records, never by modification time, which a `touch`, a copy
    or a restore from backup changes. One whose step cannot be read goes last (loading it says why)."""
    ckpt_dir = checkpoint_dir(run_dir)
    if not ckpt_dir.is_dir():
        return []

    def order(path: Path) -> tuple:
        try:
            step = checkpoint_step(path)
        except CheckpointError:
            step = -1
        return step, path.name == LAST_NAME, path.stat().st_mtime

    return sorted(ckpt_dir.glob("*.ckpt"), key=order, reverse=True)


def newest_loadable_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint of a run that loads (a torn or corrupt one is skipped, with a note)."""
    for path in checkpoints_newest_first(run_dir):
        try:
            load_checkpoint(path)
            return path
        except CheckpointError as err:
            print(f"[resume] skipping {path}: {err}")
    return None


def checkpoint_step(path: Path) -> int:
    obj = read_weights_file(path, mmap=True)  # mmap: reads only what it needs
    return int(obj.get("global_step", 0)) if isinstance(obj, dict) else 0


def resolve_resume(target: str | Path) -> tuple[Path, Path | None, bool]:
    """`RESUME=` a run folder or a checkpoint file -> (run folder, checkpoint to resume from, branch).
    `branch` is True when the checkpoint is older than the run's newest: continuing it in place
    would replace the newer `last.ckpt`, so it continues in a new version folder instead. A run
    interrupted before its first checkpoint (while building the latent cache) resumes from the
    start (checkpoint None). Reads only: nothing in the folder is changed."""
    target = Path(target)
    if target.is_file():
        run_dir = run_of_checkpoint(target)
        if not (run_dir / "config.yaml").is_file():
            raise FileNotFoundError(f"{target}: cannot find the run's config.yaml in {run_dir}")
        load_checkpoint(target)
        newest = newest_loadable_checkpoint(run_dir)
        older = newest is not None and newest.resolve() != target.resolve() and \
            checkpoint_step(target) < checkpoint_step(newest)
        return run_dir, target, older
    if target.is_dir():
        if not (target / "config.yaml").is_file():
            raise FileNotFoundError(f"{target}: not a run folder (no config.yaml)")
        ckpt = newest_loadable_checkpoint(target)
        if ckpt is None:
            if not checkpoints_newest_first(target) and read_status(target).get("state") == "interrupted":
                return target, None, False
            raise FileNotFoundError(f"{target}: no loadable checkpoint in {target / 'checkpoints'}")
        return target, ckpt, False
    raise FileNotFoundError(f"RESUME={target}: neither a run folder nor a checkpoint file")
