"""What every training run gets from `voxlab.cli.train`: the run folder's contract, a graceful stop
on SIGTERM / SIGINT, RNG state in checkpoints, and checkpoints written whole (AtomicCheckpointIO)."""
from __future__ import annotations

import os
import signal
from pathlib import Path

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from voxlab.checkpoint import atomic_torch_save, load_checkpoint
from voxlab.runs import last_checkpoint, write_status


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer and reader: atomic writes, weights-only reads (voxlab.checkpoint).
    `on_saved(path, step)` runs once a checkpoint is whole on disk (never for one that failed)."""

    def __init__(self, on_saved=None):
        super().__init__()
        self.on_saved = on_saved

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        atomic_torch_save(checkpoint, path)
        if self.on_saved is not None:
            self.on_saved(Path(path), int(checkpoint.get("global_step", 0)))

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        return load_checkpoint(path, map_location or "cpu")


class RunFolder(Callback):
    """The last checkpoint (voxlab.runs.last_checkpoint) is the state at the end of training, not only at the last step checkpoint, and
    `status.json` follows the run so a watcher sees progress: its `step` is always the step of a
    checkpoint on disk (where a resume continues; 0: the start), written once that checkpoint is
    whole (`checkpoint_saved`, called by AtomicCheckpointIO), and `trained_to` the step reached.
    (The config in every checkpoint is the module's to write: lightning_modules.base.)
    `at_start(step)`, when set, runs once Lightning has built the optimizer, restored the checkpoint
    and built the dataloaders: a resume writes its config.yaml and status.json only then."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.last = last_checkpoint(self.run_dir)
        self.at_start = None
        self.started = False
        self.saved_step = 0  # the newest checkpoint's step (a resume sets the one it starts from)

    def on_train_start(self, trainer, pl_module):
        if self.at_start is not None:
            self.at_start(trainer.global_step)  # a failure here (a full disk) is still a resume that never started
        self.started = True

    def checkpoint_saved(self, path: Path, step: int) -> None:
        """Only rank zero writes checkpoints, so only rank zero gets here."""
        self.saved_step = step
        write_status(self.run_dir, "running", step=step, trained_to=step)

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking and trainer.is_global_zero:  # rank zero owns the run folder
            write_status(self.run_dir, "running", step=self.saved_step, trained_to=trainer.global_step)

    def on_train_end(self, trainer, pl_module):
        trainer.save_checkpoint(self.last, weights_only=False)


class GracefulStop(Callback):
    """SIGTERM (a scheduler's pre-emption) and SIGINT (Ctrl+C) both finish the current batch,
    save the last checkpoint and stop; a second Ctrl+C stops at once. Lightning raises SIGTERMException
    after the batch in which SIGTERM arrived; SIGINT is turned into SIGTERM so that a half-done
    optimizer step is never what gets saved."""

    def __init__(self, run_dir: Path):
        self.last = last_checkpoint(run_dir)
        self.stopping = False
        self._previous = None

    def on_train_start(self, trainer, pl_module):
        import threading

        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be installed from the main thread

        def on_sigint(signum, frame):
            if self.stopping:
                raise KeyboardInterrupt
            self.stopping = True
            print("\n[train] interrupt: finishing this batch, saving {self.last.name} (Ctrl+C again to stop now)")
            os.kill(os.getpid(), signal.SIGTERM)

        self._previous = signal.signal(signal.SIGINT, on_sigint)

    def on_train_end(self, trainer, pl_module):
        self._restore()

    def on_exception(self, trainer, pl_module, exception):
        self._restore()
        if isinstance(exception, SIGTERMException):
            trainer.save_checkpoint(self.last, weights_only=False)
            print(f"[train] stopped at step {trainer.global_step}; saved {self.last}")

    def _restore(self):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


class RngState(Callback):
    """Saves every RNG state (python, numpy, torch CPU and CUDA) in checkpoints and restores it
    right before the first batch after a resume (not at load time: building the resumed
    dataloader draws from torch's RNG, which the uninterrupted run did not do at that point).
    Validation is made RNG-neutral (the state of the last training batch is put back after it),
    so a run that validates before stopping (as Lightning does on `should_stop`) saves the same
    state the uninterrupted run trains on."""

    def __init__(self):
        self._pending: dict | None = None
        self._after_batch: dict | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._after_batch = self.state_dict()

    def on_validation_end(self, trainer, pl_module):
        if trainer.state.fn == "fit" and self._after_batch is not None:
            self._restore(self._after_batch)

    def state_dict(self) -> dict:
        import random

        import numpy as np
        import torch

        kind, keys, pos, has_gauss, cached = np.random.get_state()
        version, internal, gauss = random.getstate()
        state = {"python": [version, list(internal), gauss], "torch": torch.get_rng_state(),
                 "numpy": [kind, torch.from_numpy(keys.astype("int64")), pos, has_gauss, cached]}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict) -> None:
        self._pending = state

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        self._restore(state)

    @staticmethod
    def _restore(state: dict) -> None:
        import random

        import numpy as np
        import torch

        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype("uint32"), pos, has_gauss, cached))
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
