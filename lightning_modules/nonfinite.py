"""Non-finite losses and gradients: caught at once, named, and never stepped into the weights.

Policy `nonfinite.policy` (config): `skip` drops the batch (no optimizer step; the count is
logged as `train/nonfinite_skips`), `stop` raises. Either way the message names the step, the
loss term(s) and the batch's utterance ids. Under DDP the decision is shared by all ranks, so
they skip together (no rank waits on a gradient all-reduce the others never start).

`SkipLimit` (every run has it) stops a run that skips more than `nonfinite.max_skip_share` of
its batches, counted once it has seen `nonfinite.min_batches` (a shorter run is judged at its
end): a run whose every batch is bad would otherwise never reach its step budget (a skipped batch
makes no optimizer step), or end "finished" without an update. The error names the step.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback


class NonFiniteLoss(RuntimeError):
    pass


def any_rank(flag: bool, device: torch.device) -> bool:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        t = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)
    return flag


def bad_terms(terms: dict[str, torch.Tensor]) -> list[str]:
    return [name for name, value in terms.items() if not torch.isfinite(value.detach()).all()]


def describe(step: int, what: list[str], batch: dict) -> str:
    utts = batch.get("utt") or []
    shown = ", ".join(map(str, utts[:8])) + (f" (+{len(utts) - 8} more)" if len(utts) > 8 else "")
    return f"non-finite {', '.join(what)} at step {step}; batch utterances: {shown or 'unknown'}"


def check_terms(module, terms: dict[str, torch.Tensor], batch: dict, policy: str) -> bool:
    """True if the batch may be used. On a bad batch: `stop` raises, `skip` warns and counts."""
    bad = bad_terms(terms)
    if not any_rank(bool(bad), module.device):
        return True
    message = describe(module.global_step, bad or ["loss on another rank"], batch)
    if policy == "stop":
        raise NonFiniteLoss(message + " (nonfinite.policy=stop)")
    module.nonfinite_skips += 1
    print(f"[nonfinite] skipping batch: {message} (skip #{module.nonfinite_skips})")
    module.log("train/nonfinite_skips", float(module.nonfinite_skips), reduce_fx="max")
    return False


def grads_finite(parameters) -> bool:
    return all(torch.isfinite(p.grad).all() for p in parameters if p.grad is not None)


class SkipLimit(Callback):
    """Counts the training batches seen and those in which the module skipped anything (its
    `nonfinite_skips` grew); raises NonFiniteLoss when the skipped share passes `max_share`.
    The counts are saved in checkpoints, so a resumed run goes on counting."""

    def __init__(self, max_share: float, min_batches: int):
        self.max_share, self.min_batches = float(max_share), int(min_batches)
        self.seen = self.skipped = 0
        self._before = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._before = getattr(pl_module, "nonfinite_skips", 0)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.seen += 1
        self.skipped += int(getattr(pl_module, "nonfinite_skips", 0) > self._before)
        if self.seen >= self.min_batches and self._too_many():
            self._stop(trainer)

    def on_train_end(self, trainer, pl_module):
        # a run shorter than min_batches is judged at its end: one whose batches were (nearly) all
        # skipped made no update and must not end as finished
        if self.seen and self._too_many():
            self._stop(trainer)

    def _too_many(self) -> bool:
        return self.skipped > self.max_share * self.seen

    def _stop(self, trainer) -> None:
        raise NonFiniteLoss(
            f"stopping the run at step {trainer.global_step}: {self.skipped} of its {self.seen} batches were "
            f"skipped for non-finite losses or gradients, more than nonfinite.max_skip_share={self.max_share:g} "
            "(the [nonfinite] lines above name the steps and utterances); lower the learning rate or fix the data")

    def state_dict(self) -> dict:
        return {"seen": self.seen, "skipped": self.skipped}

    def load_state_dict(self, state: dict) -> None:
        self.seen, self.skipped = int(state.get("seen", 0)), int(state.get("skipped", 0))
