"""Streaming shards: split across ranks and workers, shuffled through a bounded window, batched by
the frame budget, resumable at the exact batch.

There are S = world_size x workers streams; in each epoch the shard list is shuffled from (seed,
epoch) and stream s reads shards s, s+S, ... in that order, so streams never overlap and together
read every shard once per epoch (there must be at least S shards). A stream fills a window of
`buffer` samples, orders it by the samples' manifest index (so its content, not the arrival order,
decides what follows), and batches it exactly as the file sampler batches an epoch
(`datamodules.sampler.budget_batches`: shuffle, length buckets, frame budget, batch shuffle).
The first window of stream 0 uses the file sampler's seed, so one window holding the whole
corpus gives the very batches of the file path. Training streams run epoch after epoch without
end (`max_steps` stops training); validation streams read their shards once, in order.

Every batch carries its stream's position after it (`STATE_KEY`: epoch, shard, offset, the
batches already taken from the window starting there, the window's number): resuming from that
reopens the shard at the offset, rebuilds the same window and skips those batches. With W
workers the loader takes batches round-robin, so after n batches the next comes from logical
worker n % W: `rotation` maps physical workers to logical streams so a resumed loader continues
in the same order.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Callable, Iterator

from torch.utils.data import IterableDataset, get_worker_info

from datamodules.sampler import budget_batches
from datamodules.shards.format import ShardError, meta_of, read_index, read_shard

STATE_KEY = "_stream_state"
WINDOW_STRIDE = 1_000_003  # window seeds: the file sampler's seed + stride x window id


def start_position() -> dict:
    return {"epoch": 0, "shard": 0, "offset": 0, "skip": 0, "window": 0}


class ShardStream(IterableDataset):
    """Batches from a shard folder. `decoder.window(samples, window_id)` turns a window's samples
    (ordered by manifest index) into an object with `lengths` and `batch(positions, epoch)`."""

    def __init__(self, folder: str | Path, decoder, frame_budget: int, max_batch_size: int, buffer: int,
                 seed: int, train: bool, rank: int = 0, world_size: int = 1, workers: int = 0,
                 bucket_size: int = 64, keep: Callable[[dict], bool] | None = None, jitter: float = 0.1):
        self.folder = Path(folder)
        self.index = read_index(self.folder)
        self.shards = [s["name"] for s in self.index["shards"]]
        self.decoder, self.frame_budget, self.max_batch_size = decoder, frame_budget, max_batch_size
        self.buffer, self.seed, self.train, self.bucket_size = max(1, buffer), seed, train, bucket_size
        self.jitter = jitter
        self.rank, self.world_size, self.workers = rank, world_size, max(1, workers)
        self.streams = self.world_size * self.workers
        if len(self.shards) < self.streams:
            raise ShardError(f"{self.folder}: {len(self.shards)} shards for {self.streams} streams "
                             f"({world_size} ranks x {self.workers} workers): write smaller shards "
                             "(make shards ARGS=--target-mb ...) or use fewer workers")
        self.keep = keep  # a picklable filter of samples by their metadata (None: all)
        self.positions: dict[int, dict] = {}  # logical stream -> where it resumes
        self.rotation = 0

    def stream_ids(self) -> list[int]:
        """This rank's logical streams."""
        return [self.rank * self.workers + w for w in range(self.workers)]

    def shard_order(self, epoch: int) -> list[str]:
        order = list(self.shards)
        if self.train:
            random.Random(self.seed * 100_003 + epoch).shuffle(order)
        return order

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        physical = info.id if info else 0
        if info and info.num_workers != self.workers or not info and self.workers != 1:
            raise ShardError(f"the stream was built for {self.workers} workers")
        stream = self.rank * self.workers + (physical + self.rotation) % self.workers
        yield from self._batches(stream, dict(self.positions.get(stream, start_position())))

    def _batches(self, s: int, pos: dict) -> Iterator[dict]:
        epoch, shard, offset, skip, window = pos["epoch"], pos["shard"], pos["offset"], pos["skip"], pos["window"]
        while True:
            mine = self.shard_order(epoch)[s::self.streams]
            samples = self._samples(mine, shard, offset)
            while True:
                start = (shard, offset)
                items = []
                for shard, offset, sample in samples:  # (shard, offset) after each sample
                    items.append(sample)
                    if len(items) == self.buffer:
                        break
                metas = [meta_of(x) for x in items]
                items = [(m, x) for m, x in zip(metas, items) if self.keep is None or self.keep(m)]
                if not items and start == (shard, offset):
                    break  # this stream's shards of the epoch are used up
                items.sort(key=lambda item: item[0]["index"])
                window_id = window * self.streams + s
                built = self.decoder.window(items, window_id) if items else None
                rng = random.Random(self.seed * 100_003 + epoch + WINDOW_STRIDE * window_id) if self.train else None
                batches = budget_batches(built.lengths, self.frame_budget, self.max_batch_size, self.bucket_size,
                                         rng, self.jitter) if built else []
                for j in range(skip, len(batches)):
                    batch = built.batch(batches[j], epoch)
                    last = j + 1 == len(batches)
                    batch[STATE_KEY] = {"stream": s, "epoch": epoch, "shard": shard if last else start[0],
                                        "offset": offset if last else start[1], "skip": 0 if last else j + 1,
                                        "window": window + 1 if last else window}
                    yield batch
                skip, window = 0, window + 1
            if not self.train:
                return
            epoch, shard, offset, skip, window = epoch + 1, 0, 0, 0, 0

    def _samples(self, shards: list[str], shard: int, offset: int) -> Iterator[tuple[int, int, dict]]:
        """(shard position, offset, sample) from `shard`/`offset` on, the position being the one after it."""
        for i in range(shard, len(shards)):
            first = offset if i == shard else 0
            n = first
            for sample in read_shard(self.folder / shards[i], skip=first):
                n += 1
                yield i, n, sample
        return
