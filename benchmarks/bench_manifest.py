"""Scale figures for manifest validation (docs/data.md "Shards for large corpora", validation): startup
time (the waveform datamodule's setup and first loader) and peak memory for N synthetic entries,
the first run (no cached check) and the second (the check cached beside the manifest); lazily
(data.validate=lazy: files need not exist) for each N, and fully (every audio header read) for
--full-size lines naming the embedded corpus's real files, serial and with 2 worker processes.
Each measurement runs in a fresh process; the load average is printed beside it, and the sizes
of the manifest and of its cached check after it. Writes only under --work.

    .venv/bin/python benchmarks/bench_manifest.py [--sizes 10000 100000 1000000] [--full-size 10000]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from omegaconf import OmegaConf

from datamodules.audio import AudioDataModule
from datamodules.manifest import cache_path


def load() -> str:
    return "load %.2f %.2f %.2f" % os.getloadavg()


def synthetic(path: Path, n: int, wavs: list[str] | None) -> Path:
    """`n` lines: naming files that do not exist (wavs None) or, in turn, the given real ones."""
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            audio = wavs[i % len(wavs)] if wavs else f"wavs/{i // 1000:04d}/{i:08d}.wav"
            f.write(json.dumps({"utt": f"u{i:08d}", "audio": audio, "text": f"utterance number {i} of the set",
                                "duration": 1.0 + (i % 70) / 10, "speaker": f"s{i % 500}", "lang": "en"}) + "\n")
    return path


def startup(manifest: str, mode: str, workers: int) -> None:
    """In a fresh process: set up the datamodule on `manifest` and print [seconds, peak RSS bytes,
    RSS bytes before the setup (the imports)]."""
    cfg = OmegaConf.create({"seed": 0, "data": {
        "train_manifest": manifest, "val_manifest": manifest, "sample_rate": 16000, "min_duration": 0.0,
        "max_duration": 20.0, "frame_budget": 160000, "max_batch_size": 64, "crop_seconds": None,
        "peak_normalize": False, "strict": False, "num_workers": 0, "shuffle_seed": 0,
        "validate": mode, "validate_workers": workers}})
    before = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    start = time.perf_counter()
    dm = AudioDataModule(cfg)
    dm.setup("fit")
    dm.train_dataloader()
    seconds = time.perf_counter() - start
    print(json.dumps([seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, before]))


def measure(manifest: Path, mode: str, workers: int) -> tuple[float, float, float]:
    out = subprocess.run([sys.executable, __file__, "--startup", str(manifest), mode, str(workers)],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    seconds, peak, before = json.loads(out.stdout.splitlines()[-1])
    return seconds, peak / 2 ** 20, before / 2 ** 20


def report(label: str, manifest: Path, mode: str, workers: int) -> None:
    cache_path(manifest).unlink(missing_ok=True)
    for run in ("first", "second"):
        seconds, peak, before = measure(manifest, mode, workers)
        print(f"{label:34s} {run:6s} run: {seconds:8.2f} s, peak {peak:8.1f} MiB "
              f"({peak - before:+.1f} over the imports) ({load()})", flush=True)
    print(f"{label:34s} manifest {manifest.stat().st_size / 2 ** 20:.1f} MiB, "
          f"its cached check {cache_path(manifest).stat().st_size / 2 ** 20:.1f} MiB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 100000, 1000000])
    parser.add_argument("--full-size", type=int, default=10000)
    parser.add_argument("--corpus", default="data/corpus/train.jsonl", help="real files for the full check")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--startup", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.startup:
        return startup(args.startup[0], args.startup[1], int(args.startup[2]))
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_manifest_"))
    work.mkdir(parents=True, exist_ok=True)
    if args.full_size:
        corpus = Path(args.corpus).resolve()
        wavs = [str((corpus.parent / json.loads(line)["audio"]).resolve()) for line in corpus.read_text().splitlines()]
        manifest = synthetic(work / f"full_{args.full_size}.jsonl", args.full_size, wavs)
        for workers in (1, args.workers):
            report(f"{args.full_size:>8d} entries, full, {workers} worker(s)", manifest, "full", workers)
    for n in args.sizes:
        manifest = synthetic(work / f"lazy_{n}.jsonl", n, None)
        report(f"{n:>8d} entries, lazy, {args.workers} worker(s)", manifest, "lazy", args.workers)


if __name__ == "__main__":
    main()
