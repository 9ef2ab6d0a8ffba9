"""Generation for an evaluation: a `generate_fn(items, out_dir)` hook, resumable.

The hook writes `<out_dir>/<utt>.wav` for each TestItem it is given (batched as it likes). The
evaluation calls it only with the items whose wav is missing or was made by another model or other
settings: beside each wav, `<utt>.gen.json` records `{"generation": the settings it was made with,
"outcome": how it ended}`, and an existing wav is kept only when those settings equal the current
ones (a record that is the settings alone, as older folders hold, is read as such). The hook may
return utt -> outcome (`{"stopped_by": "stop_head" | "length_cap", "patches": n}`): the runaway
flag (eval/flags.py) reads it. Each utterance has its own seed (`item_seed`), so a wav does not
depend on the batch it was generated in.
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import torch

from eval.errors import EvalError
from eval.testset import TestItem, read_testset
from models import load, load_audiovae
from models.cpu_linear import cpu_summary
from voxlab.audio import load_audio, save_audio
from voxlab.checkpoint import CheckpointError

GenerateFn = Callable[[Sequence[TestItem], Path], "dict[str, dict] | None"]  # may return utt -> outcome
SIDECAR = ".gen.json"
# written into a generation folder this code created (or found empty): only such a folder is written into
MARKER = ".voxlab-eval-wavs"
DTYPES = ("float32", "bfloat16", "int8")  # backbone weights an evaluation may generate with (`--dtype`)


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def sidecar(wavs_dir: Path, utt: str) -> Path:
    return Path(wavs_dir) / f"{utt}{SIDECAR}"


def read_record(wavs_dir: Path, utt: str) -> tuple[dict, dict | None] | None:
    """(generation settings, outcome or None) from `<utt>.gen.json`; None when absent or unreadable."""
    try:
        rec = json.loads(sidecar(wavs_dir, utt).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if isinstance(rec, dict) and set(rec) == {"generation", "outcome"}:
        return rec["generation"], rec["outcome"]
    return rec, None  # an older record: the settings alone


def read_outcome(wavs_dir: Path, utt: str) -> dict | None:
    rec = read_record(wavs_dir, utt)
    return rec[1] if rec else None


def is_current(wavs_dir: Path, utt: str, generation: dict) -> bool:
    if not (Path(wavs_dir) / f"{utt}.wav").is_file():
        return False
    rec = read_record(wavs_dir, utt)
    return rec is not None and _canonical(rec[0]) == _canonical(generation)


def pending_items(items: Sequence[TestItem], wavs_dir: Path, generation: dict) -> list[TestItem]:
    return [it for it in items if not is_current(wavs_dir, it.utt, generation)]


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def check_generation_dir(wavs_dir: Path, meta: Path) -> None:
    """The folder generated wavs go to must not hold any file of the test set (meta.lst, prompt or
    ground-truth wavs: compared by device and inode, so a symlink, `..` or another spelling of the
    path is the same folder), and must be new, empty or one this code created (MARKER, or every
    file a generated wav with its record): a folder of the user's is never written into."""
    wavs_dir = Path(wavs_dir)
    if wavs_dir.exists() and not wavs_dir.is_dir():
        raise EvalError(f"--wavs {wavs_dir} is a file, not a folder: choose a new folder for the generated wavs")
    folder = _identity(wavs_dir)
    if folder is None:
        return
    items = read_testset(meta)
    own = {}  # identity -> a test set file
    for path in [Path(meta)] + [p for it in items for p in (it.prompt_wav, it.gt_wav) if p is not None]:
        own.setdefault(_identity(path), path)
        if _identity(path.parent) == folder:
            raise EvalError(f"--wavs {wavs_dir} is the folder of the test set's own {path}: generated wavs would be "
                            "written over it; choose a new folder for them (or leave --wavs out)")
    for it in items:  # a generated wav's name that is (a hard link of) a test set file
        same = own.get(_identity(wavs_dir / f"{it.utt}.wav")) if (wavs_dir / f"{it.utt}.wav").exists() else None
        if same is not None:
            raise EvalError(f"--wavs {wavs_dir}: {it.utt}.wav there is the test set's own {same}: generated wavs "
                            "would be written over it; choose a new folder for them")
    names = {p.name for p in wavs_dir.iterdir()}
    if not names or MARKER in names:
        return
    foreign = sorted(n for n in names if not (n.endswith(SIDECAR) or (n.endswith(".wav") and
                                                                       f"{n[:-4]}{SIDECAR}" in names)))
    if foreign:
        shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        raise EvalError(f"--wavs {wavs_dir} is not a folder of generated wavs (it holds {shown}): generate into a "
                        "new or empty folder; a folder the evaluation did not create is never written into")


def run_generation(items: Sequence[TestItem], wavs_dir: Path, generation: dict,
                   generate_fn: GenerateFn) -> int:
    """Generate what is not current; returns how many items were (re)generated (call
    `check_generation_dir` first)."""
    wavs_dir = Path(wavs_dir)
    wavs_dir.mkdir(parents=True, exist_ok=True)
    (wavs_dir / MARKER).touch()
    todo = pending_items(items, wavs_dir, generation)
    for it in todo:  # a stale record must not vouch for a wav the hook fails to rewrite
        sidecar(wavs_dir, it.utt).unlink(missing_ok=True)
    outcomes = (generate_fn(todo, wavs_dir) if todo else None) or {}
    for it in todo:
        if (wavs_dir / f"{it.utt}.wav").is_file():
            record = {"generation": generation, "outcome": outcomes.get(it.utt)}
            sidecar(wavs_dir, it.utt).write_text(_canonical(record), encoding="utf-8")
    return len(todo)


def generation_runtime() -> dict:
    """Where this process generates: the thread count and the CPU. Sums run in another order on
    another count or CPU, and an autoregressive model can then take another path on an utterance
    (docs/evaluation.md, "Reproducing a figure"), so a result records them."""
    return {"torch_threads": torch.get_num_threads(), "cpu": cpu_summary()}


def model_fingerprint(path: str | Path) -> dict:
    """Identifies a model file or folder by path, size and modification time (cheap, no hashing)."""
    path = Path(path).expanduser().resolve()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {"path": str(path), "bytes": sum(p.stat().st_size for p in files),
            "mtime": max((int(p.stat().st_mtime) for p in files), default=0)}


def item_seed(seed: int, utt: str) -> int:
    """Each utterance's own noise seed, from the base seed and its name: the same noise whatever the
    batch it lands in, the subset chosen or the rank that makes it (resumes and shards agree; batched
    and one-by-one wavs differ by at most 1 LSB of 16-bit audio on CPU)."""
    return (int(seed) * 1_000_003 + zlib.crc32(utt.encode("utf-8"))) % 2**31


MAX_AUTO_BATCH = 32  # beyond this the LocDiT's many rows are compute-bound: no gain per utterance (measured)


def plan_batches(model, items: Sequence[TestItem], batch_size: int = 0, memory_gb: float = 2.0,
                 max_len: int = 4096) -> list[list[TestItem]]:
    """Items sorted by target length (less padding, similar stop times), cut into batches of
    `batch_size`, or with batch_size 0 into the largest batches whose estimated memory fits in
    `memory_gb`: the batch's size x its largest `model.item_memory` (KV caches) plus its largest
    `model.decode_memory` (items are decoded one at a time)."""
    ordered = sorted(items, key=lambda it: len(it.target_text))
    if batch_size > 0:
        return [ordered[i:i + batch_size] for i in range(0, len(ordered), batch_size)]
    budget, batches, current, worst, worst_decode = memory_gb * 2**30, [], [], 0, 0
    for it in ordered:
        args = (it.target_text, it.prompt_text, _seconds(it.prompt_wav), max_len)
        need, decode = model.item_memory(*args), model.decode_memory(*args)
        if current and (len(current) >= MAX_AUTO_BATCH
                        or (len(current) + 1) * max(worst, need) + max(worst_decode, decode) > budget):
            batches.append(current)
            current, worst, worst_decode = [], 0, 0
        current.append(it)
        worst, worst_decode = max(worst, need), max(worst_decode, decode)
    return batches + [current] if current else batches


def _seconds(path) -> float:
    import soundfile as sf
    try:
        return float(sf.info(str(path)).duration)
    except Exception:  # noqa: BLE001 - an unreadable prompt fails with its own message when generating
        return 0.0


class Generated(NamedTuple):
    wav: "np.ndarray"      # float32 [T]
    sample_rate: int
    outcome: dict          # {"stopped_by": "stop_head" | "length_cap", "patches": n}


def generate_items(model, items: Sequence[TestItem], settings: dict, batch_size: int = 0,
                   memory_gb: float = 2.0) -> dict[str, Generated]:
    """utt -> Generated, with `model.synthesize_batch` (models.tts.TTSModel), in the batches of
    `plan_batches`; `settings["seed"]` is the base seed of `item_seed`."""
    settings = dict(settings)
    seed = settings.pop("seed", 0)
    out = {}
    for part in plan_batches(model, items, int(batch_size), memory_gb, settings.get("max_len", 4096)):
        made = model.synthesize_batch([it.target_text for it in part], [str(it.prompt_wav) for it in part],
                                      [it.prompt_text for it in part],
                                      seed=[item_seed(seed, it.utt) for it in part], **settings)
        for it, s in zip(part, made):
            outcome = {"stopped_by": "stop_head" if s.stopped else "length_cap", "patches": int(len(s.patches))}
            out[it.utt] = Generated(s.wav.detach().float().cpu().numpy().reshape(-1), int(s.sample_rate), outcome)
    return out


def model_generate_fn(model_path: str | Path, settings: dict, device: str = "cpu", batch_size: int = 0,
                      memory_gb: float = 2.0, dtype: str | None = None, vae_dtype: str | None = None) -> GenerateFn:
    """A generate_fn for MODEL through the project's inference API (`models.load(path, dtype=...)`,
    docs/design.md section 2), batched (`plan_batches`); loaded now so that a bad MODEL fails before
    anything is generated."""
    return generate_fn_for(load_for_generation(model_path, device, dtype, vae_dtype), settings, batch_size, memory_gb)


def load_for_generation(model_path: str | Path, device: str = "cpu", dtype: str | None = None,
                        vae_dtype: str | None = None):
    """`models.load` with its errors as EvalError (loaded once, then shared by every seed's generate_fn)."""
    try:
        return load(str(model_path), device=device, dtype=dtype, vae_dtype=vae_dtype)
    except CheckpointError as err:  # not a model, or an unreadable file
        raise EvalError(str(err)) from None


def generate_fn_for(model, settings: dict, batch_size: int = 0, memory_gb: float = 2.0) -> GenerateFn:
    """A generate_fn writing `model`'s wavs with these settings (their `seed` is the base seed)."""
    settings = dict(settings)

    def generate(items: Sequence[TestItem], out_dir: Path) -> dict[str, dict]:
        made = generate_items(model, items, settings, batch_size, memory_gb)
        for utt, g in made.items():
            save_audio(Path(out_dir) / f"{utt}.wav", g.wav, g.sample_rate)
        return {utt: g.outcome for utt, g in made.items()}

    return generate


def reference_generate_fn(vae_path: str | Path | None = None) -> GenerateFn:
    """A generate_fn that writes each item's ground-truth wav (the 5th meta.lst field) as it is
    (`vae_path` None: the scores real speech gets, the protocol's floor) or resynthesised through
    an AudioVAE (encode, decode: the ceiling a backbone decoded by that VAE can reach)."""
    vae = None if vae_path is None else load_audiovae(vae_path)

    def generate(items: Sequence[TestItem], out_dir: Path) -> None:
        for item in items:
            if item.gt_wav is None:
                raise EvalError(f"{item.utt} (line {item.line_no}): no ground-truth wav (5th meta.lst field) to "
                                "score as the reference")
            sr = 16000 if vae is None else int(vae.sample_rate)
            wav = load_audio(item.gt_wav, sr)
            if vae is not None:
                with torch.inference_mode():
                    x = torch.as_tensor(wav, dtype=torch.float32).view(1, 1, -1)
                    wav = vae.decode(vae.encode(x))[0, 0, :x.shape[-1]].numpy()
            save_audio(Path(out_dir) / f"{item.utt}.wav", wav, sr)

    return generate
