"""Does an AudioVAE keep the voice? Resemblyzer cosine between reconstruction and original (not a test).

For each utterance of a manifest, or of Seed-TTS-Eval test sets (their ground-truth wavs: voices
the VAE never trained on; the default is the mini test set's en + zh): reconstruct it through
the posterior mean, then report the mean resemblyzer cosine (reconstruction vs original), the
log-mel L1 (the module's `val/mel_l1` definition), wideband PESQ and STOI (eval/metrics/codec.py, as the
module's `val/pesq_wb` and `val/stoi`), the pitch error (eval/metrics/pitch.py: an undertrained
decoder buzzes at one pitch for every voice, which resemblyzer punishes hard) and, to calibrate
the scale, the cosine of the original with another utterance of the same speaker and with one of
a different speaker. With `--wer` (default on), the English utterances are transcribed by the
English ASR (`--whisper auto`: whisper-large-v3 when cached, else the bundled tiny.en) before and
after the VAE: the WER of the reconstructions beside the WER of the originals, and their ratio.
Resemblyzer scores are not comparable with the protocol's WavLM-ECAPA SIM.

    .venv/bin/python benchmarks/audiovae_quality.py MODEL [--testsets META ...] [--manifest M.jsonl] [--n 32]
        [--dtype float32|bfloat16]

MODEL: a run folder, a VAE checkpoint, an export folder or an official audiovae.pth.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from datamodules.manifest import read_manifest  # noqa: E402
from eval.normalize import detect_lang, normalize  # noqa: E402
from eval.testset import read_testset  # noqa: E402
from eval.metrics.codec import codec_scores  # noqa: E402
from eval.metrics.pitch import f0_error  # noqa: E402
from eval.sim import cosine  # noqa: E402
from eval.sim.resemblyzer_sim import ResemblyzerSim  # noqa: E402
from models import load_audiovae  # noqa: E402
from voxlab.audio import MelSpectrogram, load_audio  # noqa: E402


@dataclass
class Utterance:
    audio: Path
    text: str
    speaker: str
    lang: str


def utterances(manifest: str | None, testsets: list[str]) -> list[Utterance]:
    if manifest:
        entries, _ = read_manifest(manifest, 0.0, 1e9, False)
        return [Utterance(Path(e.audio), e.text, e.speaker, e.lang or detect_lang(e.text)) for e in entries]
    out = []
    for meta in testsets:
        for it in read_testset(meta):
            if it.gt_wav is None:
                raise SystemExit(f"{meta}: {it.utt} has no ground-truth wav (5th field): nothing to reconstruct")
            out.append(Utterance(it.gt_wav, it.target_text, it.utt.rsplit("_", 1)[0], detect_lang(it.target_text)))
    # interleave the test sets so that --n takes from each
    return [u for pair in zip_longest(*[[u for u in out if u.lang == lang] for lang in ("en", "zh")]) for u in pair if u]


def wer_before_after(entries, originals, recons, whisper: str) -> dict:
    """English WER (mean of per-utterance WER x 100) of the originals and of the reconstructions."""
    from eval.backends import Backends, EvalConfig
    from eval.wer import count_errors, mean_wer

    idx = [i for i, e in enumerate(entries) if e.lang == "en"]
    if not idx:
        return {}
    asr = Backends(EvalConfig(whisper=whisper, sim="none", device="cpu")).asr("en")
    refs = [normalize(entries[i].text, "en", "seedtts") for i in idx]
    scores = {}
    for name, wavs in (("original", originals), ("reconstruction", recons)):
        hyps = asr.transcribe([wavs[i] for i in idx])
        scores[name] = mean_wer([count_errors(r, normalize(h, "en", "seedtts", hypothesis=True))
                                 for r, h in zip(refs, hyps)])
    info = asr.info()
    return {"wer_asr": f"{info['name']} {info['model']}", "wer_utterances": len(idx),
            "wer_original": round(scores["original"], 2), "wer_reconstruction": round(scores["reconstruction"], 2),
            "wer_ratio": round(scores["reconstruction"] / max(scores["original"], 1e-9), 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("--testsets", nargs="*", default=["data/corpus/seedtts/en/meta.lst", "data/corpus/seedtts/zh/meta.lst"],
                   help="Seed-TTS-Eval meta.lst files whose ground-truth wavs are reconstructed")
    p.add_argument("--manifest", help="a JSONL manifest instead of --testsets (e.g. data/corpus/val.jsonl)")
    p.add_argument("--n", type=int, default=32, help="utterances (the first N)")
    p.add_argument("--whisper", default="auto", help="English ASR for --wer (see eval/asr)")
    p.add_argument("--no-wer", dest="wer", action="store_false", help="skip the WER of reconstructions")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                   help="the VAE's weights (bfloat16: what `--vae-dtype bfloat16` generates with)")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    vae = load_audiovae(args.model).to(getattr(torch, args.dtype))
    entries = utterances(args.manifest, args.testsets)[: args.n]
    sim = ResemblyzerSim()
    mel = MelSpectrogram(vae.sample_rate, n_fft=1024, hop_length=256, n_mels=80, log=True)
    originals = [load_audio(e.audio, vae.sample_rate) for e in entries]
    embeds = [sim.embed(w) for w in originals]
    recon_cos, mel_l1, same_cos, other_cos, pitch, recons, codec = [], [], [], [], [], [], []
    for i, (entry, wav) in enumerate(zip(entries, originals)):
        x = torch.from_numpy(wav)[None, None]
        with torch.inference_mode():
            y = vae.decode(vae.encode(x.to(next(vae.parameters()).dtype))).float()[..., : x.shape[-1]]
        recons.append(y.reshape(-1).numpy())
        recon_cos.append(cosine(sim.embed(y.reshape(-1).numpy()), embeds[i]))
        mel_l1.append(float(F.l1_loss(mel(y), mel(x))))
        codec.append(codec_scores(y.reshape(-1), wav, vae.sample_rate))
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
    result = {"model": args.model, "inputs": args.manifest or args.testsets, "utterances": len(entries),
              "sim_model": sim.info()["model"], "recon_cosine": mean(recon_cos),
              "recon_cosine_min": round(min(recon_cos), 4), "mel_l1": mean(mel_l1),
              # wideband PESQ (1-4.64) and STOI (0-1), over the utterances where they are defined
              "pesq_wb": mean([c["pesq_wb"] for c in codec if c["pesq_wb"] is not None]),
              "stoi": mean([c["stoi"] for c in codec if c["stoi"] is not None]),
              "f0_abs_error_hz": mean([p["abs_error_hz"] for p in pitch]),
              "f0_original_hz": mean([p["real_hz"] for p in pitch]),
              "f0_reconstruction_hz": mean([p["fake_hz"] for p in pitch]),
              # spread of per-utterance median F0 across the set: near 0 for the reconstructions = one pitch for all voices
              "f0_original_spread_hz": spread([p["real_hz"] for p in pitch]),
              "f0_reconstruction_spread_hz": spread([p["fake_hz"] for p in pitch]),
              "same_speaker_cosine": mean(same_cos), "other_speaker_cosine": mean(other_cos)}
    if args.wer:
        result.update(wer_before_after(entries, originals, recons, args.whisper))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
