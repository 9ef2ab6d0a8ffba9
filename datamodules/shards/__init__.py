"""Sharded data for large corpora: tar shards of audio or latents (`format`), written from a
manifest by `make shards` (`write`), streamed across ranks and workers (`stream`) by the shard
DataModules (`data`)."""
from datamodules.shards.data import ShardAudioDataModule, ShardTTSDataModule

__all__ = ["ShardAudioDataModule", "ShardTTSDataModule"]
