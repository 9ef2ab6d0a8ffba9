"""Scale figures for shards (docs/data.md "Shards for large corpora"): utterances per second streamed from
shards vs read from files (waveforms; latents with --latents), with 0 and 2 workers; memory and
time to open the data of N synthetic utterances (the file path's entry list and the small latent
cache's per-utterance index vs the shard index); latent cache bytes per hour of audio (fp32,
bf16). Each timing is printed with the machine's load average. Writes only under --work.

    .venv/bin/python benchmarks/bench_shards.py [--manifest data/corpus/train.jsonl] [--sizes 10000 100000 1000000]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from datamodules.audio import AudioDataModule
from datamodules.manifest import read_manifest
from datamodules.shards import ShardAudioDataModule, ShardTTSDataModule
from datamodules.shards.format import FORMAT, read_index
from datamodules.shards.stream import ShardStream
from datamodules.shards.write import write_shards
from voxlab.config import compose


def load() -> str:
    return "load %.2f %.2f %.2f" % os.getloadavg()


def rate(dm, epochs: int = 3) -> float:
    """Utterances per second over `epochs` passes of the training loader (a stream: as many
    utterances), timed from the first batch on (worker start-up left out)."""
    dm.setup("fit")
    per_epoch = len(dm.train_set) if hasattr(dm, "train_set") else read_index(dm.folder("train"))["entries"]
    loader = iter(dm.train_dataloader())
    n = len(next(loader)["utt"])
    start, counted = time.perf_counter(), 0
    for batch in loader:
        counted += len(batch["utt"])
        if n + counted >= per_epoch * epochs:
            break
    return counted / (time.perf_counter() - start)


def throughput(manifest: Path, work: Path, latents: bool, vae: str) -> None:
    audio = write_shards(manifest, work / "audio", target_mb=2, progress=False)
    n = read_index(audio)["entries"]
    for workers in (0, 2):
        common = [f"data.train_manifest={manifest}", f"data.val_manifest={manifest}", f"data.num_workers={workers}"]
        files = AudioDataModule(compose("audiovae", "tiny", common))
        shards = ShardAudioDataModule(compose("audiovae", "tiny", common + [f"data.train_shards={audio}",
                                                                            f"data.val_shards={audio}"]))
        for name, dm in (("files", files), ("shards", shards)):
            print(f"waveforms {name:6s} workers={workers}: {rate(dm):7.0f} utt/s ({n} utts; {load()})", flush=True)
    if not latents:
        return
    for workers in (0, 2):
        common = [f"data.train_manifest={manifest}", f"data.val_manifest={manifest}", f"data.num_workers={workers}",
                  f"vae.path={vae}", "data.prompt_prob=0.5", f"data.root={Path('data/corpus').resolve()}",
                  "data.shard_mb=1.0"]
        from datamodules.tts import TTSDataModule

        files = TTSDataModule(compose("d256s9", "tiny", common))
        if hasattr(files, "validate"):
            files.validate()
        files.prepare_data()
        shards = ShardTTSDataModule(compose("d256s9", "tiny", common))
        for name, dm in (("files", files), ("shards", shards)):
            print(f"latents   {name:6s} workers={workers}: {rate(dm):7.0f} utt/s ({n} utts; {load()})", flush=True)


def index_memory(sizes: list[int], work: Path, per_shard: int = 10_000) -> None:
    """Open the data of N utterances: the manifest's entry list (validation off, as with files that
    need not exist), the small cache's JSON index (name -> shard), the shard index; each in a fresh
    process, the resident memory it holds once open."""
    for n in sizes:
        manifest = work / f"synthetic_{n}.jsonl"
        with open(manifest, "w") as f:
            for i in range(n):
                f.write(json.dumps({"utt": f"spk{i % 1000}/{i:08d}", "audio": f"wavs/{i:08d}.wav",
                                    "text": "a sentence of about this length for one utterance.", "duration": 6.0,
                                    "speaker": f"spk{i % 1000}", "lang": "en"}) + "\n")
        cache_index = work / f"index_{n}.json"
        cache_index.write_text(json.dumps({f"{i:024x}": f"shard_{i // 256:05d}.pt" for i in range(n)}))
        shards = work / f"shards_{n}"
        shards.mkdir(exist_ok=True)
        count = -(-n // per_shard)
        (shards / "shards.json").write_text(json.dumps({
            "format": FORMAT, "kind": "audio", "entries": n, "sample_rate": 16000, "seconds": 6.0 * n,
            "shards": [{"name": f"shard-{i:05d}.tar", "count": per_shard, "seconds": 6.0 * per_shard, "bytes": 0}
                       for i in range(count)]}))
        for name, what, path in (("manifest entries", "manifest", manifest), ("cache index.json", "json", cache_index),
                                 ("shard index", "shards", shards)):
            out = subprocess.run([sys.executable, __file__, "--open", what, str(path)], capture_output=True, text=True,
                                 check=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
            seconds, grown = json.loads(out.stdout.splitlines()[-1])
            print(f"{n:>8d} utts, {name:17s}: {seconds:7.2f} s, holds {grown / 2 ** 20:8.1f} MiB ({load()})",
                  flush=True)


def open_once(what: str, path: str) -> None:
    """In a fresh process: open `path` as `what` and print [seconds, resident memory it holds, bytes]."""
    def resident() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    base = resident()
    start = time.perf_counter()
    if what == "manifest":
        kept = read_manifest(path, check_audio=False)
    elif what == "json":
        kept = json.loads(Path(path).read_text())
    else:
        kept = ShardStream(path, None, 1, 1, 1, 0, True)
    seconds = time.perf_counter() - start
    grown = resident() - base
    print(json.dumps([seconds, grown]))
    del kept


def cache_size(manifest: Path, work: Path, vae: str, limit: int) -> dict[str, float]:
    """Bytes per hour of audio of audio shards (the files' own bytes) and of latent shards."""
    entries, _ = read_manifest(manifest)
    subset = work / "subset.jsonl"
    subset.write_text("".join(json.dumps({"utt": e.utt, "audio": str(e.audio), "text": e.text,
                                          "speaker": e.speaker, "lang": e.lang}) + "\n" for e in entries[:limit]))
    per_hour = {}
    for kind, dtype in (("audio", None), ("latents", "float32"), ("latents", "bfloat16")):
        out = write_shards(subset, work / f"size_{dtype}", target_mb=64, vae_path=vae if dtype else None,
                           dtype=dtype or "float32", progress=False)
        index = read_index(out)
        name = dtype or "audio"
        per_hour[name] = index["bytes"] / (index["seconds"] / 3600)
        print(f"{kind} shards {name:8s}: {per_hour[name] / 2 ** 20:7.1f} MiB per hour of audio "
              f"(tar + JSON included{', target + prompt forms' if dtype else ''}; {index['seconds'] / 60:.1f} min)")
    return per_hour


def on_paper(per_hour: dict[str, float], target_mb: float = 256, utt_seconds: float = 8.0) -> None:
    """Disk and shard counts for 100k and 1M hours from the measured sizes per hour, and the data
    rate 64 GPUs need to see 1M hours in one week (the paper: 1M+ hours, one week)."""
    for hours in (100_000, 1_000_000):
        for name, b in per_hour.items():
            total = b * hours
            print(f"on paper, {hours:>9,d} h {name:8s}: {total / 2 ** 40:8.2f} TiB in {total / (target_mb * 2 ** 20):9,.0f} "
                  f"shards of {target_mb:.0f} MiB; {hours * 3600 / utt_seconds:,.0f} utterances of {utt_seconds:.0f} s")
    audio_per_s = 1_000_000 * 3600 / (7 * 86400)
    print(f"on paper, 1M h in a week on 64 GPUs: {audio_per_s:,.0f} s of audio per s ({audio_per_s / 64:.0f} per GPU), "
          f"{audio_per_s / utt_seconds:,.0f} utt/s ({audio_per_s / utt_seconds / 64:.1f} per GPU); "
          + ", ".join(f"{name} {audio_per_s * b / 3600 / 2 ** 20:.0f} MiB/s" for name, b in per_hour.items()))


def narrow_vae(work: Path) -> Path:
    import torch

    from models.audiovae import AudioVAE
    from models.weights import export_audiovae

    torch.manual_seed(0)
    return export_audiovae(AudioVAE(encoder_dim=4, decoder_dim=16, sample_rate=16000), work / "vae")


def main() -> None:
    if sys.argv[1:2] == ["--open"]:
        return open_once(sys.argv[2], sys.argv[3])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", default="data/corpus/train.jsonl")
    parser.add_argument("--vae", default=None, help="default: a random narrow AudioVAE (64-d latents at 25 Hz like "
                        "any: sizes and read speed do not depend on the weights, and it encodes fast)")
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--latents", action="store_true", help="also latents from the cache vs from shards (encodes)")
    parser.add_argument("--limit", type=int, default=None, help="first N utterances of the manifest")
    parser.add_argument("--cache-limit", type=int, default=60, help="utterances encoded for the cache-size figure")
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one, removed)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_shards_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        # the manifest copied with absolute audio paths, so that nothing is written beside the corpus
        entries = read_manifest(args.manifest)[0][: args.limit]
        manifest = work / "train.jsonl"
        manifest.write_text("".join(json.dumps({"utt": e.utt, "audio": str(e.audio), "text": e.text,
                                                "speaker": e.speaker, "lang": e.lang}) + "\n" for e in entries))
        vae = args.vae or str(narrow_vae(work))
        throughput(manifest, work, args.latents, vae)
        on_paper(cache_size(manifest, work, vae, args.cache_limit))
        index_memory(args.sizes, work)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
