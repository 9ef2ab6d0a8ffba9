"""Failure flags per utterance, so that a corpus WER is never read without knowing what drives it.

- hallucination: WER over 100%, or a run of INSERTION_RUN or more inserted tokens (words; Chinese
  characters) in the alignment: speech the text does not hold;
- truncation: generated duration under TRUNCATION_RATIO of the ground truth's, or, without a
  ground-truth wav, of the expected duration (the prompt's speaking rate, seconds per character,
  times the target text's characters);
- runaway: the length cap, not the stop head, ended the generation (the generation record beside
  the wav says which; unknown for wavs made elsewhere);
- silence: less than SILENCE_MIN_S of the output reaches speech level (20 ms frames whose RMS is
  at least SILENCE_DBFS).
A flag that cannot be decided (no WER, no record) is None and is not counted.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from eval.generate import read_outcome
from eval.wer import longest_insertion_run

FLAGS = ("hallucination", "truncation", "runaway", "silence")
INSERTION_RUN = 4
TRUNCATION_RATIO = 0.5
SILENCE_DBFS = -40.0
SILENCE_MIN_S = 0.2
FRAME_S = 0.02
DEFINITIONS = {
    "hallucination": f"WER over 100%, or {INSERTION_RUN}+ inserted tokens in a row",
    "truncation": f"duration under {TRUNCATION_RATIO} x the ground truth's (else the prompt-rate estimate)",
    "runaway": "stopped by the length cap, not the stop head (from the generation record)",
    "silence": f"under {SILENCE_MIN_S} s of 20 ms frames at {SILENCE_DBFS:g} dBFS RMS or louder",
}


def text_chars(text: str) -> int:
    return sum(not c.isspace() for c in text)


def expected_duration(prompt_s: float, prompt_text: str, target_text: str) -> float | None:
    """Seconds the target text takes at the prompt's speaking rate; None without a prompt text."""
    n = text_chars(prompt_text)
    return prompt_s * text_chars(target_text) / n if n and prompt_s > 0 else None


def active_seconds(wav: np.ndarray, sr: int) -> float:
    """Time in 20 ms frames whose RMS reaches SILENCE_DBFS (full scale = 1.0)."""
    wav = np.asarray(wav, dtype=np.float64).reshape(len(wav), -1).mean(axis=1)
    hop = max(1, int(FRAME_S * sr))
    n = len(wav) // hop
    if n == 0:
        return 0.0
    rms = np.sqrt(np.mean(wav[:n * hop].reshape(n, hop) ** 2, axis=1))
    return float(np.sum(rms >= 10 ** (SILENCE_DBFS / 20)) * hop / sr)


def utterance_flags(*, wer: float | None, insertion_run: int | None, gen_s: float, gt_s: float | None,
                    expected_s: float | None, stopped_by: str | None, active_s: float) -> dict:
    """Each flag True/False, or None when it cannot be decided; `basis` says what truncation used."""
    base = gt_s if gt_s else expected_s
    return {
        "hallucination": None if wer is None else bool(wer > 1.0 or (insertion_run or 0) >= INSERTION_RUN),
        "truncation": None if not base else bool(gen_s < TRUNCATION_RATIO * base),
        "runaway": None if stopped_by is None else stopped_by == "length_cap",
        "silence": bool(active_s < SILENCE_MIN_S),
        "basis": "ground_truth" if gt_s else "prompt_rate" if expected_s else None,
    }


def raised(flags: dict) -> list[str]:
    return [f for f in FLAGS if flags.get(f)]


def summarize_flags(all_flags) -> dict:
    """Counts of each flag, of utterances with any, and of utterances where each could be decided."""
    all_flags = list(all_flags)
    out = {f: sum(bool(x.get(f)) for x in all_flags) for f in FLAGS}
    out["any"] = sum(bool(raised(x)) for x in all_flags)
    out["decided"] = {f: sum(x.get(f) is not None for x in all_flags) for f in FLAGS}
    out["n_utts"] = len(all_flags)
    return out


def flag_utterances(items, wavs_dir, gen_paths, durations, counts, refs, hyp_norm) -> dict[str, dict]:
    """utt -> its flags and `stopped_by` (from the generation record). `durations`: utt -> (generated,
    prompt, ground truth or None) seconds; `counts`/`refs`/`hyp_norm`: as scored (empty without WER)."""
    import soundfile as sf

    out = {}
    for it in items:
        gen_s, prompt_s, gt_s = durations[it.utt]
        wav, sr = sf.read(str(gen_paths[it.utt]), dtype="float32")
        stopped_by = (read_outcome(Path(wavs_dir), it.utt) or {}).get("stopped_by")
        c = counts.get(it.utt)
        flags = utterance_flags(
            wer=c.wer if c else None, insertion_run=longest_insertion_run(refs[it.utt], hyp_norm[it.utt]) if c else None,
            gen_s=gen_s, gt_s=gt_s, expected_s=expected_duration(prompt_s, it.prompt_text, it.target_text),
            stopped_by=stopped_by, active_s=active_seconds(wav, sr))
        out[it.utt] = {**flags, "stopped_by": stopped_by}
    return out


def summary_lines(failures: dict | None, items, flags: dict, counts, hyps) -> tuple[list[str], list[str]]:
    """summary.md's flag count line, and its table of the flagged utterances."""
    if not failures:
        return [], []
    n = failures["n_utts"]
    counted = ", ".join(f"{f} {failures[f]}" + ("" if failures["decided"][f] == n else
                                                 f" (of {failures['decided'][f]} known)") for f in FLAGS)
    table = []
    flagged = [it for it in items if raised(flags.get(it.utt, {}))]
    if flagged:
        table = ["", f"## Flagged utterances ({len(flagged)})", "", "| utt | flags | WER | hypothesis |", "|---|---|---|---|"]
        for it in flagged:
            wer = f"{counts[it.utt].wer:.3f}" if it.utt in counts else "—"
            hyp = hyps.get(it.utt, "").replace("|", "\\|")
            table.append(f"| {it.utt} | {', '.join(raised(flags[it.utt]))} | {wer} | {hyp} |")
    return [f"- failure flags: {counted}; {failures['any']} of {n} utts flagged"], table
