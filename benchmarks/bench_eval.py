"""Throughput of the evaluation backends on CPU, in utterances per second (not a test).

ASR: whisper on the tiny random checkpoint and on a random model with whisper "tiny"'s dimensions,
paraformer on the tiny random folder; SIM: resemblyzer (the real weights), wespeaker and
WavLM-ECAPA on tiny random checkpoints. Random whisper weights never emit end-of-text, so they
decode to the length cap (224 tokens for "tiny"): that row is a worst case; the `40 tokens` row caps
decoding at a typical transcript length of a 4 s utterance.

    .venv/bin/python benchmarks/bench_eval.py [--n 8] [--seconds 4] [--threads 2] [--skip-paraformer]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eval import tiny_backends as fixtures  # noqa: E402


def utterances(n: int, seconds: float) -> list[np.ndarray]:
    from voxlab.audio import load_audio

    with tempfile.TemporaryDirectory() as tmp:
        return [load_audio(fixtures.write_tone(Path(tmp) / f"{i}.wav", seconds, 100 + 15 * i, seed=i), 16000)
                for i in range(n)]


def timed(fn, wavs, warmup: bool = True) -> float:
    """Utterances per second of fn(wavs), after one warm-up call on the first utterance."""
    if warmup:
        fn(wavs[:1])
    start = time.perf_counter()
    fn(wavs)
    return len(wavs) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=8, help="utterances per measurement")
    ap.add_argument("--seconds", type=float, default=4.0, help="length of each utterance")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--skip-paraformer", action="store_true", help="funasr import takes ~15 s")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    wavs = utterances(args.n, args.seconds)
    rows = []

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        from eval.asr.whisper_asr import WhisperASR

        for label, dims in [("whisper tiny random checkpoint", fixtures.TINY_WHISPER_DIMS),
                            ("whisper 'tiny' size, random (224-token cap)", fixtures.WHISPER_TINY_SIZE_DIMS)]:
            asr = WhisperASR(str(fixtures.make_tiny_whisper(tmp / f"{len(rows)}.pt", dims=dims)),
                             device="cpu", batch_size=args.batch_size)
            rows.append(("ASR", label, timed(asr.transcribe, wavs)))
            if dims is fixtures.WHISPER_TINY_SIZE_DIMS:
                asr.options = dataclasses.replace(asr.options, sample_len=40)
                rows.append(("ASR", "whisper 'tiny' size, random (40 tokens)", timed(asr.transcribe, wavs)))
        if not args.skip_paraformer:
            from eval.asr.paraformer_asr import ParaformerASR

            asr = ParaformerASR(fixtures.make_tiny_paraformer(tmp / "para"), device="cpu",
                                batch_size=args.batch_size)
            rows.append(("ASR", "paraformer tiny random folder", timed(asr.transcribe, wavs)))

        from eval.sim.resemblyzer_sim import ResemblyzerSim
        from eval.sim.wavlm_ecapa import WavLMEcapaSim
        from eval.sim.wespeaker_sim import WespeakerSim

        def per_utt(sim):
            return lambda ws: [sim.embed(w) for w in ws]

        rows.append(("SIM", "resemblyzer (real weights)", timed(per_utt(ResemblyzerSim()), wavs)))
        rows.append(("SIM", "wespeaker ResNet34 tiny random",
                     timed(per_utt(WespeakerSim(fixtures.make_tiny_wespeaker(tmp / "ws"))), wavs)))
        rows.append(("SIM", "WavLM-ECAPA tiny random",
                     timed(per_utt(WavLMEcapaSim(*fixtures.make_tiny_wavlm_ecapa(tmp / "wl"))), wavs)))

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n{args.n} utterances of {args.seconds:.1f} s, torch threads {args.threads}, "
          f"{os.cpu_count()} CPUs, load average {load:.1f} (SIM: one embedding per utterance)\n")
    print("| kind | backend | utts/s |\n|---|---|---|")
    for kind, label, ups in rows:
        print(f"| {kind} | {label} | {ups:.2f} |")
    print(json.dumps({label: round(ups, 3) for _, label, ups in rows}))


if __name__ == "__main__":
    main()
