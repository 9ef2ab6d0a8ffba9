"""The evaluation driver: test set -> (generation) -> ASR -> WER/CER -> SIM -> result folder.

`evaluate(...)` is the one library entry point (the CLI, `make eval`, callbacks and reports call it).
It writes into `out_dir`: `metrics.json`, `per_utt.csv` and `summary.md`, and returns the metrics.
Order matters: everything cheap is checked first (test set, transcripts, backend weights) so that a
mistake fails in seconds, before any generation; a missing generated wav fails and lists the
utterances, instead of being skipped as the original scripts do.
Without ASR (`config.asr="none"`, `config.asr="auto"` with the ASR weights missing, or
`skip_asr=<reason>` from the caller: eval.backends.asr_skip_reason) WER/CER are null in metrics.json with `wer_unavailable` giving the reason, empty in
per_utt.csv, and SIM is still scored.
"""
from __future__ import annotations

import csv
import json
import math
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import soundfile as sf

from eval.backends import Backends, EvalConfig, asr_skip_reason, check_backends
from eval.errors import EvalError
from eval.flags import DEFINITIONS, flag_utterances, raised, summarize_flags, summary_lines
from eval.generate import GenerateFn, check_generation_dir, generation_runtime, run_generation
from eval.normalize import VARIANTS, detect_lang, normalize, zh_punctuation
from eval.sim import cosine
from eval.testset import TestItem, read_testset, resolve_meta, summarize, testset_name
from eval.wer import ErrorCounts, corpus_wer, count_errors, mean_wer, total
from voxlab.audio import load_audio
from voxlab.safe_io import atomic_path, write_text_atomic

SR = 16000
CSV_FIELDS = ["utt", "lang", "reference", "hypothesis", "wer", "S", "D", "I", "N", "sim", "sim_model", "mos",
              "mos_model", "gen_duration", "prompt_duration", "gt_duration", "duration_ratio", "flags", "stopped_by",
              "reference_norm", "hypothesis_norm"]
DURATION_TOLERANCE = 0.25  # `duration_within_25pct`: |generated / ground truth - 1| <= this


def load_transcripts(path: str | Path) -> dict[str, str]:
    """JSONL lines `{"utt": ..., "text": ...}`; every problem is reported at once."""
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"transcripts file not found: {path}")
    out, problems = {}, []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            problems.append(f"line {n}: not JSON ({err.msg})")
            continue
        if not isinstance(rec, dict) or not isinstance(rec.get("utt"), str) or not isinstance(rec.get("text"), str):
            problems.append(f"line {n}: expected {{\"utt\": str, \"text\": str}}")
        elif rec["utt"] in out:
            problems.append(f"line {n}: utt {rec['utt']!r} given twice")
        else:
            out[rec["utt"]] = rec["text"]
    if problems:
        raise EvalError(f"{path}: {len(problems)} bad lines:\n{summarize(problems)}")
    return out


def _duration(path: Path) -> float:
    info = sf.info(str(path))
    return info.frames / float(info.samplerate)


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("torch", "numpy", "jiwer", "zhconv", "zhon", "soundfile", "soxr"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def log_metrics(metrics: dict, set_name: str) -> dict[str, float]:
    """Slash-namespaced scalars for a logger: eval/<set>/wer, wer_corpus, sim, mos, duration_ratio (those scored:
    a missing value is left out, never logged as zero)."""
    return {f"eval/{set_name}/{key}": metrics[key] for key in ("wer", "wer_corpus", "sim", "mos", "duration_ratio")
            if metrics.get(key) is not None}


def wer_skip_reason(config: EvalConfig, transcripts=None, skip_asr: str | None = None, langs=()) -> str | None:
    """Why WER is not scored for `langs` (None: it is): the caller's `skip_asr`, else the ASR policy's
    answer. Transcripts replace ASR, so they contradict a reason not to score."""
    reason = skip_asr or asr_skip_reason(config, [] if transcripts is not None else langs)
    if reason and transcripts is not None:
        raise EvalError(f"transcripts {transcripts} are given but WER is not scored ({reason}): "
                        "drop one of the two")
    return reason


def preflight(testset, config: EvalConfig, transcripts=None, limit=None, utts=None, skip_asr=None):
    """Everything cheap, before any work: the test set, the references after normalisation, the
    transcripts, the backend weights. Returns (meta, items, langs, normalised refs, transcripts)."""
    config.validate()
    wer_skip_reason(config, transcripts, skip_asr)  # transcripts with asr=none fail before reading anything
    meta = resolve_meta(testset)
    items = read_testset(meta, limit=limit, utts=list(utts) if utts else None)
    langs = {it.utt: (config.lang if config.lang != "auto" else detect_lang(it.target_text)) for it in items}
    refs = {it.utt: normalize(it.target_text, langs[it.utt], config.normalization) for it in items}
    empty = [f"line {it.line_no} ({it.utt}): {it.target_text!r}" for it in items if not refs[it.utt]]
    if empty:
        raise EvalError(f"{meta}: {len(empty)} target texts have nothing left to score after "
                        f"{config.normalization} normalisation:\n{summarize(empty)}")
    no_wer = wer_skip_reason(config, transcripts, skip_asr, sorted(set(langs.values())))
    given = None
    if transcripts is not None:
        given = load_transcripts(transcripts)
        missing = [it.utt for it in items if it.utt not in given]
        if missing:
            raise EvalError(f"{transcripts}: no transcript for {len(missing)} utts:\n{summarize(missing)}")
    check_backends(config, asr_langs=sorted(set(langs.values())) if given is None and not no_wer else [],
                   sim=config.sim != "none", mos=config.mos != "none")
    return meta, items, langs, refs, given


def evaluate(testset: str | Path, wavs_dir: str | Path | None, out_dir: str | Path, *,
             config: EvalConfig | None = None, backends: Backends | None = None,
             transcripts: str | Path | None = None, limit: int | None = None,
             utts: Sequence[str] | None = None, generation: dict | None = None,
             generate_fn: GenerateFn | None = None, overwrite: bool = False,
             log: Callable[[str], None] | None = None, skip_asr: str | None = None) -> dict:
    """Score `<wavs_dir>/<utt>.wav` for the test set (generating them first with `generate_fn`
    when given; `wavs_dir` defaults to `<out_dir>/wavs`). `backends` (already loaded, reused across
    calls) wins over `config`. `skip_asr`: a reason to score without ASR (WER null, SIM scored).
    Returns the metrics written to `<out_dir>/metrics.json`."""
    log = log or (lambda msg: print(f"[eval] {msg}", file=sys.stderr, flush=True))
    t_start = time.perf_counter()
    config = backends.config if backends is not None else (config or EvalConfig())
    config.validate()
    out_dir = Path(out_dir)
    if (out_dir / "metrics.json").exists() and not overwrite:
        raise EvalError(f"{out_dir / 'metrics.json'} exists: choose another output folder "
                        "(results are never overwritten) or pass overwrite=True / --overwrite")

    # 1. preflight: test set, references, transcripts, backend weights (before any generation)
    meta, items, langs, refs, given = preflight(testset, config, transcripts=transcripts,
                                                 limit=limit, utts=utts, skip_asr=skip_asr)
    no_wer = wer_skip_reason(config, transcripts, skip_asr, sorted(set(langs.values())))
    asr_langs = sorted(set(langs.values())) if given is None and not no_wer else []
    backends = backends or Backends(config)

    # 2. generation (resumable), then every wav must be there and readable
    wavs_dir = Path(wavs_dir) if wavs_dir is not None else out_dir / "wavs"
    n_generated, t_gen = 0, time.perf_counter()
    if generate_fn is not None:
        check_generation_dir(wavs_dir, meta)
        n_generated = run_generation(items, wavs_dir, generation or {}, generate_fn)
        log(f"generated {n_generated} of {len(items)} wavs into {wavs_dir}")
    t_gen = time.perf_counter() - t_gen
    gen_paths = {it.utt: wavs_dir / f"{it.utt}.wav" for it in items}
    missing = [u for u, p in gen_paths.items() if not p.is_file()]
    if missing:
        raise EvalError(f"{len(missing)} of {len(items)} generated wavs missing in {wavs_dir} "
                        f"(nothing is scored over a subset):\n{summarize(missing)}")
    durations, bad = {}, []
    for it in items:
        try:
            durations[it.utt] = (_duration(gen_paths[it.utt]), _duration(it.prompt_wav),
                                 _duration(it.gt_wav) if it.gt_wav is not None else None)
        except Exception as err:  # noqa: BLE001 - soundfile raises several types
            bad.append(f"{it.utt}: {err}")
            continue
        if durations[it.utt][0] <= 0:
            bad.append(f"{it.utt}: {gen_paths[it.utt]} is empty")
    if bad:
        raise EvalError(f"{len(bad)} wavs cannot be read:\n{summarize(bad)}")

    # 3. ASR, one language at a time, batched
    t_asr = time.perf_counter()
    hyps: dict[str, str] = {}
    if given is not None:
        hyps = {it.utt: given[it.utt] for it in items}
    else:
        for lang in asr_langs:
            group = [it for it in items if langs[it.utt] == lang]
            asr = backends.asr(lang)
            chunk = max(1, config.asr_batch_size) * 4
            from_files = getattr(asr, "transcribe_files", None)  # a backend that reads the files as the protocol does
            for start in range(0, len(group), chunk):
                part = group[start:start + chunk]
                texts = (from_files([gen_paths[it.utt] for it in part]) if from_files is not None
                         else asr.transcribe([load_audio(gen_paths[it.utt], SR, mono="mix") for it in part]))
                hyps.update({it.utt: t for it, t in zip(part, texts)})
            log(f"transcribed {len(group)} {lang} utts with {asr.name}")
    t_asr = time.perf_counter() - t_asr

    # 4. WER (without ASR: no hypotheses, no counts)
    hyp_norm = {it.utt: normalize(hyps[it.utt], langs[it.utt], config.normalization, hypothesis=True)
                for it in items if it.utt in hyps}
    counts = {u: count_errors(refs[u], hyp_norm[u]) for u in hyp_norm}

    # 5. SIM (prompt embeddings cached: prompts repeat across utterances)
    t_sim = time.perf_counter()
    sims: dict[str, float] = {}
    sim_backend = backends.sim()
    if sim_backend is not None:
        prompt_emb = {}
        for it in items:
            if it.prompt_wav not in prompt_emb:
                prompt_emb[it.prompt_wav] = sim_backend.embed(load_audio(it.prompt_wav, SR, mono="mix"))
            gen_emb = sim_backend.embed(load_audio(gen_paths[it.utt], SR, mono="mix"))
            sims[it.utt] = cosine(gen_emb, prompt_emb[it.prompt_wav])
        log(f"scored speaker similarity of {len(items)} utts with {sim_backend.name}")
    t_sim = time.perf_counter() - t_sim

    # 5b. MOS prediction of each generated utterance (no reference needed)
    t_mos = time.perf_counter()
    mos_scores: dict[str, dict] = {}
    mos_backend = backends.mos()
    if mos_backend is not None:
        for it in items:
            mos_scores[it.utt] = mos_backend.score(load_audio(gen_paths[it.utt], SR, mono="mix"))
        log(f"predicted MOS of {len(items)} utts with {mos_backend.info()['model']}")
    t_mos = time.perf_counter() - t_mos

    # 6. results
    # generated length against the ground truth's (when meta.lst gives a 5th field): does it stop?
    ratios = {u: d[0] / d[2] for u, d in durations.items() if d[2]}
    mos = {u: s["mos"] for u, s in mos_scores.items()}
    metrics = _aggregate(items, langs, counts, sims, ratios, mos)
    flags = flag_utterances(items, wavs_dir, gen_paths, durations, counts, refs, hyp_norm)
    metrics["failures"] = {**summarize_flags(flags.values()), "definitions": DEFINITIONS}
    for lang, group in metrics["by_lang"].items():
        group["failures"] = summarize_flags(flags[it.utt] for it in items if langs[it.utt] == lang)
    if mos_scores:  # every component the predictor gives (DNSMOS: sig, bak, p808 beside OVRL), averaged
        metrics["mos_components"] = {k: round(statistics.fmean(s[k] for s in mos_scores.values()), 4)
                                     for k in next(iter(mos_scores.values()))}
    if no_wer:
        metrics["wer_unavailable"] = no_wer
    metrics.update({
        "testset": {"path": str(meta), "name": testset_name(meta), "limit": limit,
                    "utts": list(utts) if utts else None},
        "wavs_dir": str(wavs_dir),
        "normalization": {"variant": config.normalization, "description": VARIANTS[config.normalization],
                          "zh_punctuation_chars": len(zh_punctuation())},
        "lang": config.lang,
        "asr": ({"source": "transcripts", "path": str(transcripts)} if given is not None
                else {"source": "none", "reason": no_wer} if no_wer
                else {lang: backends.asr(lang).info() for lang in asr_langs}),
        "asr_protocol_exact": _protocol_exact(backends, asr_langs) if given is None and not no_wer else None,
        "sim_backend": sim_backend.info() if sim_backend is not None else None,
        "sim_model": sim_backend.info()["model"] if sim_backend is not None else None,
        "mos_backend": mos_backend.info() if mos_backend is not None else None,
        "mos_model": mos_backend.info()["model"] if mos_backend is not None else None,
        "generation": generation,
        "n_generated": n_generated,
        "generation_runtime": generation_runtime() if n_generated else None,
        "durations": {"gen_total_s": round(sum(d[0] for d in durations.values()), 3),
                      "prompt_total_s": round(sum(d[1] for d in durations.values()), 3)},
        "timing": {"generation_s": round(t_gen, 3), "asr_s": round(t_asr, 3), "sim_s": round(t_sim, 3), "mos_s": round(t_mos, 3),
                   "total_s": round(time.perf_counter() - t_start, 3)},
        "versions": _versions(),
        "config": config.to_dict(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_per_utt(out_dir / "per_utt.csv", items, langs, hyps, refs, hyp_norm, counts, sims, durations,
                   ratios, metrics["sim_model"] or "", mos, metrics["mos_model"] or "", flags)
    write_text_atomic(out_dir / "summary.md", render_summary(metrics, items, counts, hyps, sims, flags))
    write_text_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    sim_text = "-" if metrics["sim"] is None else f"{metrics['sim']:.4f}"
    wer_text = (f"WER unavailable ({no_wer})" if no_wer
                else f"WER {metrics['wer']:.3f} (corpus {metrics['wer_corpus']:.3f})")
    mos_text = "" if metrics["mos"] is None else f" MOS {metrics['mos']:.3f} ({metrics['mos_model']})"
    log(f"{wer_text} SIM {sim_text}{mos_text} over {len(items)} utts -> {out_dir}")
    return metrics


def _protocol_exact(backends: Backends, langs) -> bool:
    """True when every language's ASR ran Seed-TTS-Eval's own code path on its own model."""
    return all(backends.asr(lang).info().get("protocol_exact", False) for lang in langs)


def _scores(group: list[TestItem], counts: dict[str, ErrorCounts], sims: dict[str, float],
            ratios: dict[str, float], mos: dict[str, float]) -> dict:
    """Scores of a group; WER fields are null when it was not scored (no counts), duration fields
    when no item has a ground-truth wav."""
    cs = [counts[it.utt] for it in group if it.utt in counts]
    sim_vals = [sims[it.utt] for it in group if it.utt in sims]
    rs = sorted(ratios[it.utt] for it in group if it.utt in ratios)
    mos_vals = [mos[it.utt] for it in group if it.utt in mos]
    out = {"n_utts": len(group), "wer": None, "wer_corpus": None, "counts": None,
           "sim": round(sum(sim_vals) / len(sim_vals), 5) if sim_vals else None,
           "mos": round(statistics.fmean(mos_vals), 4) if mos_vals else None,
           "duration_ratio": round(sum(rs) / len(rs), 4) if rs else None,
           "duration_ratio_median": round(statistics.median(rs), 4) if rs else None,
           "duration_within_25pct": round(sum(abs(r - 1) <= DURATION_TOLERANCE for r in rs) / len(rs), 4) if rs else None}
    if cs:
        acc = total(cs)
        out.update(wer=round(mean_wer(cs), 4), wer_corpus=round(corpus_wer(cs), 4),
                   counts={"S": acc.S, "D": acc.D, "I": acc.I, "N": acc.N})
    return out


def _aggregate(items, langs, counts, sims, ratios, mos) -> dict:
    out = _scores(list(items), counts, sims, ratios, mos)
    out["by_lang"] = {lang: _scores([it for it in items if langs[it.utt] == lang], counts, sims, ratios, mos)
                      for lang in sorted(set(langs.values()))}
    return out


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def _fmt(x: float | None, digits: int = 4) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _write_per_utt(path, items, langs, hyps, refs, hyp_norm, counts, sims, durations, ratios, sim_model,
                   mos, mos_model, flags) -> None:
    """One row per utterance; `wer` is the fraction (the protocol's per-utterance value)."""
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for it in items:
            c = counts.get(it.utt)  # None: WER not scored, its cells stay empty
            row = {"utt": it.utt, "lang": langs[it.utt], "reference": it.target_text,
                   "hypothesis": hyps.get(it.utt, ""), "sim": _fmt(sims.get(it.utt)), "sim_model": sim_model,
                   "mos": _fmt(mos.get(it.utt)), "mos_model": mos_model if it.utt in mos else "",
                   "gen_duration": _fmt(durations[it.utt][0], 3),
                   "prompt_duration": _fmt(durations[it.utt][1], 3),
                   "gt_duration": _fmt(durations[it.utt][2], 3),
                   "duration_ratio": _fmt(ratios.get(it.utt), 3),
                   "flags": ";".join(raised(flags[it.utt])), "stopped_by": flags[it.utt]["stopped_by"] or "",
                   "reference_norm": " ".join(refs[it.utt]),
                   "hypothesis_norm": " ".join(hyp_norm.get(it.utt, []))}
            if c is not None:
                row.update({"wer": _fmt(c.wer), "S": c.S, "D": c.D, "I": c.I, "N": c.N})
            writer.writerow(row)


def render_summary(metrics: dict, items, counts, hyps, sims, flags: dict | None = None, worst: int = 10) -> str:
    ts = metrics["testset"]
    sim_line = ("not scored (--sim none)" if metrics["sim"] is None
                else f"**{metrics['sim']:.4f}** with {metrics['sim_model']}")
    if metrics["sim_backend"] and not metrics["sim_backend"].get("comparable_to_seed_tts_eval"):
        sim_line += " (not comparable to the paper's WavLM-ECAPA SIM)"
    asr = metrics["asr"]
    asr_line = (f"transcripts from `{asr['path']}`" if asr.get("source") == "transcripts"
                else "none" if asr.get("source") == "none"
                else "; ".join(f"{lang}: {a['name']} {a.get('model') or a.get('model_dir')}"
                               + (" (the protocol's exact path)" if a.get("protocol_exact") else
                                  f" (not the protocol's exact path: {a.get('protocol_note', 'another implementation')})")
                               for lang, a in asr.items()))
    c = metrics["counts"]
    lines = [
        f"# Seed-TTS-Eval: {ts['name']}", "",
        f"- test set: `{ts['path']}` ({metrics['n_utts']} utts"
        + (f", limit {ts['limit']}" if ts["limit"] else "") + ")",
    ]
    if metrics.get("wer_unavailable"):
        lines.append(f"- WER unavailable: {metrics['wer_unavailable']}")
    else:
        lines += [
            f"- WER (mean of per-utterance WER x100, the protocol's number): **{metrics['wer']:.3f}**",
            f"- corpus WER (total errors / reference tokens x100): {metrics['wer_corpus']:.3f} "
            f"(S {c['S']}, D {c['D']}, I {c['I']}, N {c['N']})"]
    lines += [
        f"- SIM: {sim_line}",
        f"- ASR: {asr_line}",
    ]
    if metrics.get("mos") is not None:
        lines.append(f"- MOS: **{metrics['mos']:.3f}** predicted by {metrics['mos_model']}"
                     + (" (speech quality, not naturalness; not UTMOS)" if metrics["mos_backend"]["name"] == "dnsmos"
                        else ""))
    if metrics.get("duration_ratio") is not None:
        lines.append(f"- duration generated / ground truth: mean {metrics['duration_ratio']:.3f}, median "
                     f"{metrics['duration_ratio_median']:.3f}; within 25%: {100 * metrics['duration_within_25pct']:.0f}% of utts")
    lines += [
        f"- normalisation: `{metrics['normalization']['variant']}` ({metrics['normalization']['description']})",
    ]
    if metrics.get("generation"):
        lines.append(f"- generation: `{json.dumps(metrics['generation'], sort_keys=True, default=str)}`")
    if metrics.get("generation_runtime"):
        rt = metrics["generation_runtime"]
        lines.append(f"- generated here with {rt['torch_threads']} torch threads on {rt['cpu']} (another count or CPU "
                     f"can move single utterances)")
    flag_count, flag_table = summary_lines(metrics.get("failures"), items, flags or {}, counts, hyps)
    lines += flag_count
    if len(metrics["by_lang"]) > 1:
        lines += ["", "| lang | utts | WER | corpus WER | SIM | MOS |", "|---|---|---|---|---|---|"]
        for lang, s in metrics["by_lang"].items():
            lines.append(f"| {lang} | {s['n_utts']} | {_fmt(s['wer'], 3) or '—'} | "
                         f"{_fmt(s['wer_corpus'], 3) or '—'} | {_fmt(s['sim']) or '—'} | {_fmt(s.get('mos'), 3) or '—'} |")
    if counts:
        ranked = sorted(items, key=lambda it: -counts[it.utt].wer)[:worst]
        lines += ["", f"## Highest WER ({len(ranked)})", "", "| utt | WER | SIM | reference | hypothesis |",
                  "|---|---|---|---|---|"]
        for it in ranked:
            lines.append(f"| {it.utt} | {counts[it.utt].wer:.3f} | {_fmt(sims.get(it.utt))} | "
                         f"{cell(it.target_text)} | {cell(hyps[it.utt])} |")
    elif sims:  # no WER: the lowest speaker similarities are what there is to look at
        ranked = sorted((it for it in items if it.utt in sims), key=lambda it: sims[it.utt])[:worst]
        lines += ["", f"## Lowest SIM ({len(ranked)})", "", "| utt | SIM | reference |", "|---|---|---|"]
        lines += [f"| {it.utt} | {_fmt(sims[it.utt])} | {cell(it.target_text)} |" for it in ranked]
    return "\n".join(lines + flag_table) + "\n"
