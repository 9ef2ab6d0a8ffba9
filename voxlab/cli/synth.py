"""`make synth MODEL=... TEXT=... OUT=... [PROMPT_WAV=... PROMPT_TEXT=...] [ARGS=...]`: zero-shot TTS
or voice cloning to a 16 kHz wav; prints the duration and the real-time factor (synthesis seconds
per audio second, model loading excluded).

    python -m voxlab.cli.synth --model MODEL --text TEXT --out OUT [--prompt-wav W --prompt-text T]
        [--cfg 2.0] [--timesteps 10] [--temperature 1.0] [--seed S] [--max-len 4096] [--device cpu]
        [--retry-badcase] [--dtype float32|bfloat16|int8] [--vae-dtype float32|bfloat16] [--stream]

MODEL: a TTS Lightning checkpoint, a run folder, an exported folder or an official VoxCPM folder.
OUT: a new wav file; an existing one only with --overwrite, and only if it is a readable wav (no
other file is ever written over); a folder: `<folder>/<text slug>.wav` under the same rule.
Characters outside the model's vocabulary are reported (they become <unk>), as is a cut by the
length cap.
"""
from __future__ import annotations

import argparse
import itertools
import re
import sys
import time
import warnings
from pathlib import Path

import models
from models.tts import TextWarning, check_settings
from models.tts_io import ModelPathError
from models.weights import WeightsError
from voxlab.audio import AudioError, load_audio, sample_problem
from voxlab.safe_io import atomic_path

OUT_RATE = 16000


class SynthError(ValueError):
    pass


def check_inputs(text: str, prompt_wav: str | None, prompt_text: str | None, settings: dict | None = None) -> None:
    """Input errors found before the model is loaded (`settings`: cfg, timesteps, temperature, max_len)."""
    if text is None or not text.strip():
        raise SynthError("TEXT is empty: give the text to synthesise (TEXT=\"...\")")
    if prompt_wav and not (prompt_text and prompt_text.strip()):
        raise SynthError(f"PROMPT_WAV={prompt_wav} needs PROMPT_TEXT (the transcript of the prompt audio)")
    if prompt_text and prompt_text.strip() and not prompt_wav:
        raise SynthError("PROMPT_TEXT needs PROMPT_WAV (the audio it transcribes)")
    if prompt_wav:
        if not Path(prompt_wav).is_file():
            raise SynthError(f"PROMPT_WAV={prompt_wav}: no such file")
        try:
            samples = load_audio(prompt_wav, OUT_RATE, mono="mix")
        except AudioError as err:
            raise SynthError(f"PROMPT_WAV: {err}") from None
        problem = sample_problem(samples)
        if problem:
            raise SynthError(f"PROMPT_WAV={prompt_wav}: {problem}")
    if settings:
        try:
            check_settings(**settings)
        except ValueError as err:
            raise SynthError(str(err)) from None


def slug(text: str) -> str:
    """A file name from the text: word characters joined by "_", at most 40 of them."""
    return re.sub(r"\W+", "_", text.strip().lower()).strip("_")[:40].strip("_") or "synth"


def out_path(out: str, text: str, overwrite: bool = False) -> Path:
    """The wav to write, checked before the model loads: a folder gets `<slug of text>.wav`; an
    existing file is replaced only with `overwrite` and only when it is a readable wav."""
    path = Path(out).expanduser()
    if path.is_dir():
        path = path / f"{slug(text)}.wav"
    if path.exists() or path.is_symlink():
        if path.is_dir() or not path.is_file():
            raise SynthError(f"OUT={path} exists and is not a regular file: choose another OUT")
        if not overwrite:
            raise SynthError(f"OUT={path} exists: choose another OUT or pass --overwrite (ARGS=--overwrite) "
                             "to replace that wav")
        import soundfile as sf
        try:
            is_wav = sf.info(str(path)).format == "WAV"
        except Exception:  # noqa: BLE001 - soundfile raises several types for what it cannot read
            is_wav = False
        if not is_wav:
            raise SynthError(f"OUT={path} exists and is not a readable wav file: it is never written over, "
                             "even with --overwrite; choose another OUT")
    elif not path.parent.is_dir():
        raise SynthError(f"OUT={path}: folder {path.parent} does not exist")
    return path


def write_wav(path: Path, chunks, sr: int, overwrite: bool) -> int:
    """16-bit PCM wav at OUT_RATE from one waveform or an iterable of waveform chunks (written as they
    come; resampled when sr differs), via a unique temporary file beside `path`, renamed into place
    (removed on error). Returns the samples written."""
    import numpy as np
    import soundfile as sf

    if hasattr(chunks, "shape"):
        chunks = [chunks]
    resampler = None
    if sr != OUT_RATE:
        import soxr
        resampler = soxr.ResampleStream(sr, OUT_RATE, 1, dtype="float32")

    written = 0
    with atomic_path(path) as tmp:
        with sf.SoundFile(tmp, "w", samplerate=OUT_RATE, channels=1, subtype="PCM_16", format="WAV") as f:
            for chunk in itertools.chain(chunks, [None] if resampler else []):  # None: flush the resampler
                x = np.zeros(0, np.float32) if chunk is None else np.asarray(chunk, dtype=np.float32).reshape(-1)
                if resampler is not None:
                    x = resampler.resample_chunk(x, last=chunk is None)
                f.write(np.clip(x, -1.0, 1.0))
                written += len(x)
        if path.exists() and not overwrite:  # appeared while synthesising
            raise SynthError(f"OUT={path} appeared while synthesising: not replaced (pass --overwrite)")
    return written


def synthesize(model_path: str, text: str, out: str, prompt_wav: str | None = None, prompt_text: str | None = None,
               cfg: float = 2.0, timesteps: int = 10, temperature: float = 1.0, seed: int | None = None,
               max_len: int = 4096, device: str | None = None, retry_badcase: bool = False,
               overwrite: bool = False, dtype: str | None = None, stream: bool = False,
               vae_dtype: str | None = None) -> dict:
    """Load MODEL (backbone weights in `dtype`, the VAE's in `vae_dtype`), synthesise, write `out` (16 kHz PCM wav); with
    `stream`, chunk by chunk as `generate_streaming` yields them. Returns the figures it prints
    (first_chunk_s: seconds to the first audio) and the warnings (unknown characters, length cap)
    under "warnings"."""
    if not str(model_path or "").strip():
        raise SynthError("MODEL is empty: give a checkpoint, run folder, exported or official VoxCPM folder")
    if not str(out or "").strip():
        raise SynthError("OUT is empty: give the wav file to write (OUT=out.wav)")
    if stream and retry_badcase:
        raise SynthError("--retry-badcase cannot go with --stream: a streamed chunk is final, nothing can be redone")
    check_inputs(text, prompt_wav, prompt_text,
                 {"cfg": cfg, "timesteps": timesteps, "temperature": temperature, "max_len": max_len})
    path = out_path(out, text, overwrite)

    model = models.load(model_path, device=device, dtype=dtype, vae_dtype=vae_dtype)
    kw = dict(prompt_wav=prompt_wav or None, prompt_text=prompt_text or None, cfg=cfg, timesteps=timesteps,
              temperature=temperature, seed=seed, max_len=max_len)
    times: dict[str, float] = {}

    def chunks():
        source = (model.generate_streaming(text, **kw) if stream
                  else iter([model.generate(text, retry_badcase=retry_badcase, **kw)[0]]))
        for chunk in source:
            times.setdefault("first", time.perf_counter() - t0)
            yield chunk.numpy()
        times["all"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TextWarning)
        samples = write_wav(path, chunks(), model.sample_rate, overwrite)
    notes = [str(w.message) for w in caught if issubclass(w.category, TextWarning)]
    for w in caught:  # others go on as they would have
        if not issubclass(w.category, TextWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    duration, seconds = samples / OUT_RATE, times["all"]
    return {"out": str(path), "duration_s": duration, "synthesis_s": seconds, "first_chunk_s": times.get("first"),
            "rtf": seconds / duration if duration else float("inf"), "warnings": notes,
            "into_folder": Path(out).expanduser().is_dir()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint, run folder, exported or official VoxCPM folder")
    p.add_argument("--text", required=True)
    p.add_argument("--out", required=True, help="output wav (16 kHz), or a folder for <text slug>.wav")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT (only ever a wav file)")
    p.add_argument("--prompt-wav", default=None, help="voice cloning: prompt audio")
    p.add_argument("--prompt-text", default=None, help="voice cloning: transcript of the prompt audio")
    p.add_argument("--cfg", type=float, default=2.0, help="classifier-free guidance scale")
    p.add_argument("--timesteps", type=int, default=10, help="Euler steps of the LocDiT")
    p.add_argument("--temperature", type=float, default=1.0, help="initial-noise scale (0: deterministic)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--max-len", type=int, default=4096, help="most patches (12.5 per second) to generate")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: where the weights load, cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "int8"), default=None,
                   help="backbone weights (int8: CPU only)")
    p.add_argument("--vae-dtype", choices=("float32", "bfloat16"), default=None,
                   help="AudioVAE weights (default float32; bfloat16 encodes and decodes about 2x faster on CPU)")
    p.add_argument("--stream", action="store_true",
                   help="write the audio chunk by chunk as it is generated; prints the time to the first chunk")
    p.add_argument("--retry-badcase", action="store_true",
                   help="generate again (3 runs at most) when the output reaches 6 patches per text token, "
                        "as the official VoxCPM.generate does by default")
    args = p.parse_args(argv)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    try:
        r = synthesize(args.model, args.text, args.out, args.prompt_wav, args.prompt_text, args.cfg, args.timesteps,
                       args.temperature, args.seed, args.max_len, args.device, retry_badcase=args.retry_badcase,
                       overwrite=args.overwrite, dtype=args.dtype, stream=args.stream, vae_dtype=args.vae_dtype)
    except (SynthError, ModelPathError, WeightsError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for note in r["warnings"]:
        print(f"warning: {note}", file=sys.stderr)
    if r["into_folder"]:
        print(f"OUT is a folder: writing {r['out']}")
    print(f"wrote {r['out']}: {r['duration_s']:.2f} s of audio at {OUT_RATE} Hz, synthesised in "
          f"{r['synthesis_s']:.2f} s (real-time factor {r['rtf']:.3f})"
          + (f"; first chunk after {r['first_chunk_s']:.3f} s" if args.stream and r["first_chunk_s"] is not None
             else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
