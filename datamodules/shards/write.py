"""Manifest -> shards (`make shards`): audio, or VAE latents (the latent cache at scale).

The manifest's usable entries are cut, in order, into consecutive shards of about `target_mb`
(audio: the files' sizes; latents: frames x dim x bytes of the dtype). Shards are independent:
`workers` processes write them at once, and `rank`/`world` split them across machines (shard i
goes to rank i % world); each is written whole with its sidecar, so a re-run writes only the
missing ones and `shards.json` appears when the last is done (`datamodules.shards.format`).
Latent shards hold the target form and, with `prompts`, the prompt form of every utterance,
encoded exactly as the small cache encodes them (`datamodules.latents`), stored as float32,
float16 or bfloat16; the cache key (VAE fingerprint, patch, dtype) is recorded in `shards.json`.
Each sidecar records a fingerprint of the manifest lines its shard holds (`rows`: text, speaker,
duration, the audio's stamp...) and of all of them (`lines`, also in `shards.json`): a re-run after the
manifest was corrected rewrites the shards whose lines changed, interrupted or not, and `shards.json`
is written only when every shard holds the manifest as it is now.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import multiprocessing
from pathlib import Path

from datamodules.latents import encode_batch, length_batches, vae_fingerprint
from datamodules.manifest import Entry, read_manifest
from datamodules.shards.format import FORMAT, INDEX, ShardError, latent_bytes, shard_name, write_shard
from models import load_audiovae
from voxlab.safe_io import write_text_atomic

DTYPE_NAMES = {"fp32": "float32", "float32": "float32", "fp16": "float16", "float16": "float16",
               "bf16": "bfloat16", "bfloat16": "bfloat16"}
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


def latent_key(fingerprint: str, dtype: str) -> str:
    """The cache key of latent shards: the VAE fingerprint (weights, audio settings, patch) + dtype."""
    return f"{fingerprint}-{DTYPE_NAMES[dtype]}"


def plan_shards(entries: list[Entry], target_bytes: float, sizes: list[float]) -> list[list[int]]:
    """Consecutive runs of entry positions, each closed once it reaches `target_bytes`."""
    plan, current, size = [], [], 0.0
    for i, s in enumerate(sizes):
        current.append(i)
        size += s
        if size >= target_bytes:
            plan.append(current)
            current, size = [], 0.0
    if current:
        plan.append(current)
    return plan


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def manifest_lines(manifest: str | Path) -> tuple[list[Entry], list[dict], str]:
    """(usable entries, their shard rows, the fingerprint of all rows): what a shard set of
    `manifest` must hold now."""
    entries, _ = read_manifest(Path(manifest).resolve())
    rows = [_row(e, j) for j, e in enumerate(entries)]
    return entries, rows, _digest(rows)


def write_shards(manifest: str | Path, out: str | Path, target_mb: float = 256.0, vae_path: str | None = None,
                 dtype: str = "float32", prompts: bool = True, patch_size: int = 2, sample_rate: int = 16000,
                 workers: int = 1, rank: int = 0, world: int = 1, progress: bool = True) -> Path:
    """Write this rank's missing shards of `manifest` into `out`; returns `out`. `vae_path`: latent
    shards encoded by that VAE (else audio shards)."""
    if not 0 <= rank < world:
        raise ShardError(f"rank {rank} outside world size {world}")
    if dtype not in DTYPE_NAMES:
        raise ShardError(f"dtype {dtype!r}: one of {', '.join(DTYPE_NAMES)}")
    dtype = DTYPE_NAMES[dtype]
    manifest, out = Path(manifest).resolve(), Path(out)
    entries, rows, lines = manifest_lines(manifest)
    spec = {"format": FORMAT, "source": str(manifest), "entries": len(entries), "target_mb": target_mb,
            "kind": "latents" if vae_path else "audio", "sample_rate": sample_rate}
    if vae_path:
        vae = load_audiovae(vae_path)
        if vae.sample_rate != sample_rate:
            raise ShardError(f"the VAE works at {vae.sample_rate} Hz, not {sample_rate}")
        spec["latents"] = {"key": latent_key(vae_fingerprint(vae, sample_rate, patch_size), dtype), "dtype": dtype,
                           "patch_size": patch_size, "prompts": prompts}
        frame_bytes = vae.latent_dim * DTYPE_BYTES[dtype] * (2 if prompts else 1)
        sizes = [math.ceil(e.duration * sample_rate / vae.hop_length) * frame_bytes for e in entries]
    else:
        sizes = [e.audio.stat().st_size for e in entries]
    spec["settings"] = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    plan = plan_shards(entries, target_mb * 2 ** 20, sizes)
    out.mkdir(parents=True, exist_ok=True)
    _check_owner(out, spec)
    shard_rows = [[rows[j] for j in part] for part in plan]
    _drop_stale(out, [_digest(r) for r in shard_rows], lines, rank, world)
    mine = [i for i in range(len(plan)) if i % world == rank and not (out / _sidecar(i)).is_file()]
    jobs = [(out, i, len(plan), shard_rows[i], spec, vae_path, lines) for i in mine]
    with contextlib.ExitStack() as stack:
        done = map(_write_one, jobs)
        if workers > 1 and len(jobs) > 1:
            pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(min(workers, len(jobs))))
            done = pool.imap_unordered(_write_one, jobs)
        for n, _ in enumerate(done, 1):
            if progress:
                print(f"[shards] {n}/{len(jobs)} shards written", flush=True)
    finish(out, lines)
    return out


def _sidecar(i: int) -> str:
    return shard_name(i).replace(".tar", ".json")


def _row(e: Entry, index: int) -> dict:
    return {"utt": e.utt, "audio": str(e.audio), "text": e.text, "duration": e.duration, "speaker": e.speaker,
            "lang": e.lang, "index": index, "stamp": e.stamp}


def _drop_stale(out: Path, shard_digests: list[str], lines: str, rank: int, world: int) -> None:
    """Bring `out` to the manifest as it is now: this rank's sidecars whose lines changed (or that
    record none: written before fingerprints) are removed so their shards are written again, the
    others are stamped with the manifest's `lines`, shards past the end of the plan are removed, and
    `shards.json` goes once anything is stale. A sidecar marks its shard done: it goes first."""
    stale = []
    for i, digest in enumerate(shard_digests):
        side = out / _sidecar(i)
        if i % world != rank or not side.is_file():
            continue
        stats = json.loads(side.read_text())
        if stats.get("rows") != digest:
            stale.append(i)
        elif stats.get("lines") != lines:  # kept: it holds these lines of the manifest as it is now
            write_text_atomic(side, json.dumps({**stats, "lines": lines}))
    extra = [p for p in out.glob("shard-*.json") if int(p.stem.split("-")[1]) >= len(shard_digests)]
    if not stale and not extra:
        return
    (out / INDEX).unlink(missing_ok=True)
    for i in stale:
        (out / _sidecar(i)).unlink(missing_ok=True)
    for side in extra:
        side.unlink(missing_ok=True)
        side.with_suffix(".tar").unlink(missing_ok=True)
    names = ", ".join(shard_name(i) for i in stale[:3]) + (" ..." if len(stale) > 3 else "")
    print(f"[shards] {out}: {len(stale)} shard(s) hold manifest lines that changed since ({names}) and "
          f"{len(extra)} lie past its end: written again", flush=True)


def _check_owner(out: Path, spec: dict) -> None:
    """`out` is empty or holds (part of) this very shard set: never mix two sets or overwrite one."""
    for side in sorted(out.glob("shard-*.json"))[:1]:
        if json.loads(side.read_text()).get("settings") != spec["settings"]:
            raise ShardError(f"{out} holds shards of another source or settings ({side.name}): choose another OUT")
    if not any(out.glob("shard-*.json")) and any(p.suffix != ".tmp" for p in out.iterdir()):
        raise ShardError(f"{out} is not empty and holds no shard set: choose another OUT")


_VAE_CACHE: dict = {}


def _write_one(job) -> None:
    out, i, total, rows, spec, vae_path, lines = job
    latents = _encode_rows(rows, spec, vae_path) if spec["kind"] == "latents" else {}
    samples = []
    for row in rows:
        meta, data = {k: row[k] for k in ("utt", "text", "duration", "speaker", "lang", "index")}, {}
        if spec["kind"] == "audio":  # the file's own bytes: lossless, nothing re-encoded
            path = Path(row["audio"])
            meta["audio"] = path.suffix.lstrip(".").lower() or "audio"
            data[meta["audio"]] = path.read_bytes()
        else:
            for name, latent in latents[row["utt"]].items():
                data[name], meta[name] = latent_bytes(latent, spec["latents"]["dtype"])
        samples.append({"json": json.dumps(meta, ensure_ascii=False).encode(), **data})
    stats = write_shard(out / shard_name(i), samples)
    stats.update(of=total, seconds=sum(r["duration"] for r in rows), settings=spec["settings"], spec=spec,
                 rows=_digest(rows), lines=lines)
    write_text_atomic(out / _sidecar(i), json.dumps(stats))


def _encode_rows(rows: list[dict], spec: dict, vae_path: str) -> dict[str, dict]:
    """utt -> {"latent": target form[, "prompt_latent": prompt form]}, by the small cache's encoder."""
    import torch

    lat = spec["latents"]
    if vae_path not in _VAE_CACHE:  # one load per worker process
        _VAE_CACHE[vae_path] = load_audiovae(vae_path).eval()
    vae = _VAE_CACHE[vae_path]
    entries = [Entry(r["utt"], Path(r["audio"]), r["text"], r["duration"]) for r in rows]
    todo = [(e, False) for e in entries] + ([(e, True) for e in entries] if lat["prompts"] else [])
    todo.sort(key=lambda item: item[0].duration)  # batches of similar length, as the small cache
    out: dict[str, dict] = {e.utt: {} for e in entries}
    with torch.inference_mode():
        for batch in length_batches(todo, spec["sample_rate"], 16000 * 40):
            for (e, is_prompt), latent in zip(batch, encode_batch(batch, vae, spec["sample_rate"],
                                                             vae.hop_length * lat["patch_size"])):
                out[e.utt]["prompt_latent" if is_prompt else "latent"] = latent
    return out


def finish(out: Path, lines: str | None = None) -> bool:
    """Write `shards.json` once every shard's sidecar is there (by whichever process gets there
    first; the content is the same) and all hold the same manifest lines (`lines`, when given: the
    manifest's now). Returns whether the set is complete."""
    first = out / _sidecar(0)
    if not first.is_file():
        return False
    head = json.loads(first.read_text())
    spec, sides = head["spec"], [out / _sidecar(i) for i in range(head["of"])]
    if not all(p.is_file() for p in sides):
        return False
    shards = [json.loads(p.read_text()) for p in sides]
    expected = lines or head.get("lines")
    if expected is None or any(s.get("lines") != expected for s in shards):
        return False  # a shard of another version of the manifest is still to be rewritten
    index = {k: v for k, v in spec.items() if k != "target_mb"}
    index["lines"] = expected
    index.update(seconds=sum(s["seconds"] for s in shards), bytes=sum(s["bytes"] for s in shards),
                 shards=[{k: s[k] for k in ("name", "count", "seconds", "bytes")} for s in shards])
    write_text_atomic(out / INDEX, json.dumps(index, indent=1))
    return True
