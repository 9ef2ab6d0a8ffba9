"""Does an AudioVAE keep the voice? Resemblyzer cosine between reconstruction and original (not a test).

For each utterance of a manifest (default: the corpus's held-out val.jsonl): reconstruct it through
the posterior mean, then report the mean resemblyzer cosine (reconstruction vs original), the
log-mel L1 (the module's `val/mel_l1` definition), the pitch error (eval/pitch.py: an undertrained
decoder buzzes at one pitch for every voice, which resemblyzer punishes hard) and, to calibrate
the scale, the cosine of the original with another utterance of the same speaker and with one of
a different speaker.
Resemblyzer scores are not comparable with the protocol's WavLM-ECAPA SIM.

    .venv/bin/python benchmarks/audiovae_quality.py MODEL [--manifest data/corpus/val.jsonl] [--n 32]

MODEL: a run folder, a VAE checkpoint, an export folder or an official audiovae.pth.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from datamodules.manifest import read_manifest  # noqa: E402
from eval.pitch import f0_error  # noqa: E402
from eval.sim import cosine  # noqa: E402
from eval.sim.resemblyzer_sim import ResemblyzerSim  # noqa: E402
from models import load_audiovae  # noqa: E402
from voxlab.audio import MelSpectrogram, load_audio  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("--manifest", default="data/corpus/val.jsonl")
    p.add_argument("--n", type=int, default=32, help="utterances (the first N of the manifest)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    vae = load_audiovae(args.model)
    entries, _ = read_manifest(args.manifest, 0.0, 1e9, False)
    entries = entries[: args.n]
    sim = ResemblyzerSim()
    mel = MelSpectrogram(vae.sample_rate, n_fft=1024, hop_length=256, n_mels=80, log=True)
    originals = [load_audio(e.audio, vae.sample_rate) for e in entries]
    embeds = [sim.embed(w) for w in originals]
    recon_cos, mel_l1, same_cos, other_cos, pitch = [], [], [], [], []
    for i, (entry, wav) in enumerate(zip(entries, originals)):
        x = torch.from_numpy(wav)[None, None]
        with torch.inference_mode():
            y = vae.decode(vae.encode(x))[..., : x.shape[-1]]
        recon_cos.append(cosine(sim.embed(y.reshape(-1).numpy()), embeds[i]))
        mel_l1.append(float(F.l1_loss(mel(y), mel(x))))
        err = f0_error(y.reshape(-1).numpy(), wav, vae.sample_rate)
        if err is not None:
            pitch.append(err)
        same = [j for j, e in enumerate(entries) if j != i and e.speaker == entry.speaker]
        other = [j for j, e in enumerate(entries) if e.speaker != entry.speaker]
        if same:
            same_cos.append(cosine(embeds[same[0]], embeds[i]))
        if other:
            other_cos.append(cosine(embeds[other[0]], embeds[i]))
    mean = lambda xs: round(float(np.mean(xs)), 4) if xs else None  # noqa: E731
    spread = lambda xs: round(float(np.std(xs)), 1) if xs else None  # noqa: E731
    result = {"model": args.model, "manifest": args.manifest, "utterances": len(entries),
              "sim_model": sim.info()["model"], "recon_cosine": mean(recon_cos),
              "recon_cosine_min": round(min(recon_cos), 4), "mel_l1": mean(mel_l1),
              "f0_abs_error_hz": mean([p["abs_error_hz"] for p in pitch]),
              "f0_original_hz": mean([p["real_hz"] for p in pitch]),
              "f0_reconstruction_hz": mean([p["fake_hz"] for p in pitch]),
              # spread of per-utterance median F0 across the set: near 0 for the reconstructions = one pitch for all voices
              "f0_original_spread_hz": spread([p["real_hz"] for p in pitch]),
              "f0_reconstruction_spread_hz": spread([p["fake_hz"] for p in pitch]),
              "same_speaker_cosine": mean(same_cos), "other_speaker_cosine": mean(other_cos)}
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
