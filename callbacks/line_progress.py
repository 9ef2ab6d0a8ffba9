"""Progress as plain lines for logs and pipes (where a progress bar is one ever-growing line):
`[train] step 1200/3000 (40%) train/loss 1.234 | 0.41 s/step, ETA 12m18s`, at most every
`every_seconds` and at the last step, on stdout. Training uses it whenever stdout is not a terminal
(`make train > log`, `make demo > log`, `| tee`, a scheduler's log file); on a terminal the Rich
progress bar shows the same (Rich draws on stdout too, and draws nothing while stdout is a file)."""
from __future__ import annotations

import sys
import time

import lightning as L


def _fmt_seconds(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class LineProgress(L.Callback):
    def __init__(self, every_seconds: float = 30.0, stream=None):
        self.every = float(every_seconds)
        self.stream = stream  # None: sys.stdout at the time of printing
        self._t0 = self._last = None
        self._step0 = 0

    def on_train_start(self, trainer, pl_module):
        self._t0 = self._last = time.monotonic()
        self._step0 = self._step(trainer, pl_module)

    @staticmethod
    def _step(trainer, pl_module) -> int:  # the AudioVAE counts generator steps itself
        return int(getattr(pl_module, "generator_step", trainer.global_step))

    @staticmethod
    def _budget(trainer, pl_module) -> int | None:
        budget = getattr(pl_module, "_budget", None) or trainer.max_steps
        return int(budget) if budget and budget > 0 else None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if not trainer.is_global_zero or self._t0 is None:
            return
        now, step, total = time.monotonic(), self._step(trainer, pl_module), self._budget(trainer, pl_module)
        if now - self._last < self.every and step != total:
            return
        self._last = now
        rate = (now - self._t0) / max(1, step - self._step0)
        loss = next((float(v) for k, v in trainer.callback_metrics.items() if k in ("train/loss", "train/mel/loss")), None)
        parts = [f"[train] step {step}" + (f"/{total} ({100 * step // total}%)" if total else "")]
        if loss is not None:
            parts.append(f"loss {loss:.4g}")
        eta = f", ETA {_fmt_seconds(rate * (total - step))}" if total else ""
        print(" ".join(parts) + f" | {rate:.2f} s/step{eta}", file=self.stream or sys.stdout, flush=True)


def progress_callback(stream=None) -> tuple[L.Callback, bool]:
    """(callback, enable_progress_bar) for a Trainer: the Rich bar when stdout is a terminal, else
    plain lines."""
    stream = stream or sys.stdout
    if stream.isatty():
        from lightning.pytorch.callbacks import RichProgressBar
        return RichProgressBar(), True
    return LineProgress(stream=stream), False
