"""Dataloader throughput (utterances per second) of the waveform pipeline, with and without workers."""
import sys
import time

from omegaconf import OmegaConf

from datamodules.audio import AudioDataModule
from voxlab.config import compose


def throughput(workers: int, crop: float | None) -> float:
    cfg = compose("audiovae", "tiny", [f"data.num_workers={workers}"])
    cfg = OmegaConf.merge(cfg, {"data": {"crop_seconds": crop}})
    dm = AudioDataModule(cfg)
    dm.setup("fit")
    loader = dm.train_dataloader()
    start, n = time.perf_counter(), 0
    for batch in loader:
        n += len(batch["utt"])
    return n / (time.perf_counter() - start)


if __name__ == "__main__":
    for workers in (0, 2):
        for crop in (None, 0.8):
            print(f"workers={workers} crop={crop}: {throughput(workers, crop):.0f} utt/s", flush=True)
    sys.exit(0)
