"""Frame-budget bucketed batching, aware of distributed ranks.

A batch holds as many items as fit in `frame_budget` padded frames (batch size x longest item),
so short utterances make big batches and long ones small batches: memory stays flat. Items are
shuffled per epoch, then sorted by length inside buckets of `bucket_size`, so a batch holds
items of similar length (little padding). The sort key is each length times a random factor in
[1, 1 + `jitter`), drawn per epoch, so batch composition changes between epochs even where the
buckets hold the same items.

Padding comes mostly from the bucket size counted in batches: a bucket of 64 random items spans
the corpus's whole length range, and cut into batches of ~20 each batch takes a third of it. On
the embedded corpus at the tiny budget (2048) 16.8% of the padded positions are padding with
buckets of 64, 8.2% with 256, 5.2% with one bucket for the epoch; the jitter adds 0.3-1.6 points
(`benchmarks/bench_training.py` prints the table). Larger buckets make two items that shared a
batch share one again the next epoch more often: little on a big corpus (62,400 items, bucket
1024: 0.4%), much when a bucket holds most of a small corpus (624 items: 39%, only the jitter
mixes them). `padding_share` and `batchmate_repeat` measure both. The datamodules pass the
defaults (64, 0.1).

Every rank computes the same batch list from (seed, epoch) and takes every `world_size`-th batch:
ranks are disjoint and together see every item once per epoch. To give each rank the same
number of steps (DDP needs it), the largest batches are split in two until the count divides.

The sampler is resumable: `seek(n)` (or `load_state_dict`) positions it after n batches, and the
next iteration continues from there.
"""
from __future__ import annotations

import random
from typing import Iterator, Sequence

import torch.distributed as dist


class FrameBudgetBatchSampler:
    def __init__(self, lengths: Sequence[int], frame_budget: int, max_batch_size: int = 64,
                 shuffle: bool = True, seed: int = 0, bucket_size: int = 64,
                 rank: int | None = None, world_size: int | None = None, with_epoch: bool = False,
                 jitter: float = 0.1):
        if frame_budget <= 0:
            raise ValueError("frame_budget must be positive")
        self.lengths = [int(n) for n in lengths]
        self.frame_budget, self.max_batch_size = frame_budget, max_batch_size
        if bucket_size < 1 or jitter < 0:
            raise ValueError(f"bucket_size must be >= 1 and jitter >= 0 (got {bucket_size}, {jitter})")
        self.shuffle, self.seed, self.bucket_size, self.jitter = shuffle, seed, int(bucket_size), float(jitter)
        if world_size is None:
            world_size = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if rank is None:
            rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.rank, self.world_size = rank, world_size
        # with_epoch: yield (index, epoch) pairs, so a dataset can draw its per-item randomness
        # (random crops) from (seed, epoch, index): the same with or without workers or a resume.
        self.with_epoch = with_epoch
        self.epoch, self.consumed = 0, 0
        self._cache: tuple[int, list[list[int]]] | None = None

    # -- batch construction ---------------------------------------------------------------
    def all_batches(self, epoch: int) -> list[list[int]]:
        """The batches of every rank for `epoch`, in order (rank r takes r, r+W, ...)."""
        rng = random.Random(self.seed * 100_003 + epoch)
        batches = budget_batches(self.lengths, self.frame_budget, self.max_batch_size, self.bucket_size,
                                 rng if self.shuffle else None, jitter=self.jitter)
        return self._balance(batches)

    def _balance(self, batches: list[list[int]]) -> list[list[int]]:
        while len(batches) % self.world_size:
            splittable = [i for i, b in enumerate(batches) if len(b) > 1]
            if not splittable:
                # Only single-item batches left: repeat from the start (the one case where an
                # item is seen twice in an epoch; it needs fewer items than ranks per bucket).
                batches.append(list(batches[len(batches) % max(len(batches), 1)]))
                continue
            i = max(splittable, key=lambda j: len(batches[j]))
            half = len(batches[i]) // 2
            batches[i:i + 1] = [batches[i][:half], batches[i][half:]]
        return batches

    def _rank_batches(self) -> list[list[int]]:
        if self._cache is None or self._cache[0] != self.epoch:
            self._cache = (self.epoch, self.all_batches(self.epoch)[self.rank::self.world_size])
        return self._cache[1]

    # -- sampler protocol -----------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.consumed = epoch, 0

    def __len__(self) -> int:
        return len(self._rank_batches())

    def __iter__(self) -> Iterator[list[int]]:
        if self.consumed >= len(self._rank_batches()):  # the previous epoch was used up
            self.epoch, self.consumed = self.epoch + 1, 0
        batches = self._rank_batches()
        for i in range(self.consumed, len(batches)):
            self.consumed = i + 1
            yield [(j, self.epoch) for j in batches[i]] if self.with_epoch else batches[i]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "consumed": self.consumed, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.consumed = int(state["epoch"]), int(state["consumed"])

    def seek(self, batches_trained: int) -> None:
        """Position after `batches_trained` batches since epoch 0 (this rank's count)."""
        epoch, left = 0, int(batches_trained)
        while left >= (n := len(self.all_batches(epoch)[self.rank::self.world_size])):
            epoch, left = epoch + 1, left - n
        self.epoch, self.consumed = epoch, left


def budget_batches(lengths: Sequence[int], frame_budget: int, max_batch_size: int, bucket_size: int,
                   rng: random.Random | None, jitter: float = 0.1) -> list[list[int]]:
    """Positions of `lengths` grouped into frame-budget batches: shuffled by `rng` (None: in
    order), sorted by length (times a factor in [1, 1 + jitter) when shuffled; 0: the exact
    length, ties in shuffled order) inside buckets of `bucket_size`, then the batches shuffled.
    The file sampler runs it over a whole epoch; the shard stream over each window of its buffer."""
    order = list(range(len(lengths)))
    if rng is not None:
        rng.shuffle(order)
    batches: list[list[int]] = []
    for start in range(0, len(order), bucket_size):
        # Sorting by a slightly jittered length mixes the batch composition between epochs.
        factor = ({i: 1.0 + jitter * rng.random() for i in order[start:start + bucket_size]}
                  if rng is not None and jitter else {})
        bucket = sorted(order[start:start + bucket_size], key=lambda i: lengths[i] * factor.get(i, 1.0))
        batch: list[int] = []
        longest = 0
        for idx in bucket:
            new_longest = max(longest, lengths[idx])
            if batch and (new_longest * (len(batch) + 1) > frame_budget or len(batch) >= max_batch_size):
                batches.append(batch)
                batch, new_longest = [], lengths[idx]
            batch.append(idx)
            longest = new_longest
        if batch:
            batches.append(batch)
    if rng is not None:
        rng.shuffle(batches)
    return batches


def padding_share(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Share of padded positions in `batches` (right-padded to each batch's longest item):
    1 - real positions / (batch size x longest, summed over the batches)."""
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches if b)
    return 1.0 - sum(lengths[i] for b in batches for i in b) / padded if padded else 0.0


def batchmate_repeat(first: Sequence[Sequence[int]], second: Sequence[Sequence[int]]) -> float:
    """Of the item pairs that share a batch in `first`, the share that share one again in `second`
    (two epochs): 0 for batches that never repeat a pairing, 1 when the same batches come back."""
    def pairs(batches):
        return {(a, b) if a < b else (b, a) for batch in batches for k, a in enumerate(batch) for b in batch[k + 1:]}
    p, q = pairs(first), pairs(second)
    return len(p & q) / len(p) if p else 0.0
