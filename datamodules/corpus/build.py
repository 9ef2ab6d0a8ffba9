"""Builds the embedded offline corpus: wavs, train/val manifests, a Seed-TTS-Eval style test
set on held-out voices, a text-only LM corpus and a summary.

Layout under `out_dir`:
    wavs/<utt>.wav                       train + val audio (16 kHz mono, 16-bit PCM)
    train.jsonl, val.jsonl               {"utt","audio","text","duration","speaker","lang"}
    seedtts/{en,zh}/meta.lst             utt|prompt_text|prompt-wavs/<p>.wav|target_text|wavs/<utt>.wav
    seedtts/{en,zh}/{prompt-wavs,wavs}/  prompt and ground-truth audio (held-out voices only)
    seedtts/{en,zh}_hard/                the hard cases (repeated words, tongue twisters, long
                                         sentences; sentences.HARD_KINDS), same voices and prompts
    lm_text.txt                          one sentence per line, EN and ZH alternating
    corpus.json                          counts, hours, settings, voice definitions
    .corpus_stamp.json                   settings + the list of files this build wrote

Re-runs: with the same settings on a complete build, nothing is done. With other settings (or
after an interrupted build), the files listed in the previous stamp - and only those - are
deleted, then the new corpus is built; files of the user's in the same folder are never touched.
A folder holding corpus files but no stamp is refused.

`num_utts` counts every rendered utterance: train + val + the test set's prompts and targets; the
hard-case sets come on top (2 x 16 renders per language at most).
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from .sentences import HARD_KINDS, hard_sentence, sentence
from .phones import PHONES_FILE, render_with_phones
from .voices import SAMPLE_RATE, voice_table, voices
from voxlab.text import CharTokenizer

log = logging.getLogger(__name__)

CORPUS_VERSION = 2  # bump when the generated texts or audio change
STAMP = ".corpus_stamp.json"
LANGS = ("en", "zh")
TESTSETS = LANGS + tuple(f"{lang}_hard" for lang in LANGS)
MIN_DURATION, MAX_DURATION = 1.0, 6.0
HARD_MAX_DURATION = 16.0  # the long hard cases
VAL_FRACTION = 0.05
MAX_TEST_PER_LANG = 16
MIN_UTTS = 20


class CorpusError(RuntimeError):
    """A corpus that cannot be built where or how it was asked for."""


@dataclass
class Job:
    path: str      # relative to out_dir
    text: str
    lang: str
    speaker: str


def _unique_sentences(lang: str, rng: random.Random, n: int, exclude: set[str]) -> list[str]:
    out: list[str] = []
    seen = set(exclude)
    for _ in range(50 * n + 100):
        if len(out) == n:
            break
        s = sentence(lang, rng)
        if s not in seen:
            seen.add(s)
            out.append(s)
    if len(out) == n:
        return out
    raise CorpusError(f"could not draw {n} distinct {lang} sentences from the word lists")


def plan(seed: int, num_utts: int) -> dict:
    """Decide every text, voice and file of the corpus (no audio): a pure function of the
    arguments."""
    if num_utts < MIN_UTTS:
        raise CorpusError(f"num_utts={num_utts} is too small: at least {MIN_UTTS} are needed to "
                          f"cover every voice of both languages")
    n_test = min(MAX_TEST_PER_LANG, max(2, round(num_utts / 45)))  # items per language
    n_main = num_utts - 2 * n_test * len(LANGS)                    # train + val utterances
    per_lang = {"en": n_main - n_main // 2, "zh": n_main // 2}
    jobs: list[Job] = []
    rows: dict[str, list[dict]] = {"train": [], "val": []}
    test: dict[str, list[dict]] = {}
    for lang in LANGS:
        rng = random.Random(f"voxlab-corpus:{seed}:{lang}")  # str seeds hash with sha512: stable
        n = per_lang[lang]
        texts = _unique_sentences(lang, rng, n + 2 * n_test, set())
        train_voices = [v.speaker for v in voices(lang, held_out=False)]
        n_val = max(1, round(VAL_FRACTION * n))
        for i, text in enumerate(texts[:n]):
            speaker = train_voices[i % len(train_voices)]
            utt = f"{speaker}_{i:04d}"
            jobs.append(Job(f"wavs/{utt}.wav", text, lang, speaker))
            split = "val" if i >= n - n_val else "train"  # the last ones: every voice in turn
            rows[split].append({"utt": utt, "audio": f"wavs/{utt}.wav", "text": text,
                                "speaker": speaker, "lang": lang})
        test_voices = [v.speaker for v in voices(lang, held_out=True)]
        prompts, targets = texts[n:n + n_test], texts[n + n_test:]
        test[lang] = []
        for k in range(n_test):  # prompt and target: same held-out voice, other sentences
            speaker = test_voices[k % len(test_voices)]
            utt, prompt = f"{speaker}_t{k:03d}", f"{speaker}_p{k:03d}"
            item = {"utt": utt, "speaker": speaker, "lang": lang,
                    "prompt_text": prompts[k], "prompt_wav": f"prompt-wavs/{prompt}.wav",
                    "target_text": targets[k], "gt_wav": f"wavs/{utt}.wav"}
            test[lang].append(item)
            for wav, text in ((item["prompt_wav"], prompts[k]), (item["gt_wav"], targets[k])):
                jobs.append(Job(f"seedtts/{lang}/{wav}", text, lang, speaker))
        # the hard cases: the same voices and prompts, other targets (their own random stream, so
        # the plain corpus is the same with or without them)
        hard = _hard_sentences(lang, random.Random(f"voxlab-corpus-hard:{seed}:{lang}"), n_test, set(texts))
        test[f"{lang}_hard"] = []
        for k, plain in enumerate(test[lang]):
            item = {**plain, "utt": plain["utt"].replace("_t", "_h", 1), "target_text": hard[k],
                    "gt_wav": f"wavs/{plain['utt'].replace('_t', '_h', 1)}.wav"}
            test[f"{lang}_hard"].append(item)
            for wav, text in ((item["prompt_wav"], item["prompt_text"]), (item["gt_wav"], hard[k])):
                jobs.append(Job(f"seedtts/{lang}_hard/{wav}", text, lang, item["speaker"]))
    return {"jobs": jobs, "rows": rows, "test": test}


def _hard_sentences(lang: str, rng: random.Random, n: int, exclude: set[str]) -> list[str]:
    """`n` distinct hard cases, the kinds in turn."""
    out: list[str] = []
    for i in range(50 * n + 100):
        if len(out) == n:
            return out
        text = hard_sentence(lang, rng, HARD_KINDS[len(out) % len(HARD_KINDS)])
        if text not in exclude and text not in out:
            out.append(text)
    raise CorpusError(f"could not draw {n} distinct {lang} hard cases from the word lists")


def lm_sentences(seed: int, n: int, exclude: set[str]) -> list[str]:
    """`n` text-only sentences, EN and ZH alternating, none of them in `exclude`."""
    per = {"en": n - n // 2, "zh": n // 2}
    by_lang = {lang: _unique_sentences(lang, random.Random(f"voxlab-lm:{seed}:{lang}"),
                                       per[lang], exclude) for lang in LANGS}
    out = []
    for i in range(per["en"]):
        out.append(by_lang["en"][i])
        if i < per["zh"]:
            out.append(by_lang["zh"][i])
    return out


def _render_job(args: tuple[str, Job]) -> tuple[str, int, list]:
    out_dir, job = args
    wav, phones = render_with_phones(job.text, job.lang, job.speaker)  # the timings come free with the audio
    path = Path(out_dir) / job.path
    sf.write(str(path), wav, SAMPLE_RATE, subtype="PCM_16")
    return job.path, len(wav), [[round(a, 4), round(b, 4), n] for a, b, n in phones]


# ----------------------------------------------------------------------- stamp and clean-up
def _outputs(jobs: list[Job]) -> list[str]:
    return ([j.path for j in jobs] + ["train.jsonl", "val.jsonl", "lm_text.txt", "vocab.txt", "corpus.json",
                                   PHONES_FILE]
            + [f"seedtts/{name}/meta.lst" for name in TESTSETS])


_OWN_DIRS = ["wavs"] + [f"seedtts/{name}/{d}" for name in TESTSETS for d in ("prompt-wavs", "wavs")] \
    + [f"seedtts/{name}" for name in TESTSETS] + ["seedtts"]


def _remove_previous(out: Path, stamp: dict) -> None:
    root = out.resolve()
    for rel in stamp.get("files", []):
        path = (out / rel).resolve()
        if root not in path.parents:  # a stamp is only trusted inside its own folder
            raise CorpusError(f"{out / STAMP}: refuses to delete {rel!r}, outside the corpus")
        path.unlink(missing_ok=True)
    for rel in _OWN_DIRS:  # only if now empty: a user's file in them keeps them
        d = out / rel
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()
    (out / STAMP).unlink(missing_ok=True)


def _check_no_foreign_corpus(out: Path) -> None:
    clash = [name for name in ("train.jsonl", "val.jsonl", "corpus.json", "lm_text.txt",
                               "wavs", "seedtts") if (out / name).exists()]
    if clash:
        raise CorpusError(f"{out} already holds {', '.join(clash)} but no {STAMP}: not a corpus "
                          f"built by this tool, so nothing is overwritten. Move them away or "
                          f"choose another --out.")


# ----------------------------------------------------------------------------------- build
def build_corpus(out_dir: str | Path, seed: int = 0, num_utts: int = 720, workers: int = 2,
                 lm_size: int = 20000, progress: bool = True) -> Path:
    """Build (or find up to date) the embedded corpus in `out_dir`; returns `out_dir`.

    Deterministic: the same seed and sizes give the same texts, voices and audio bytes,
    whatever `workers` is.
    """
    out = Path(out_dir)
    settings = {"version": CORPUS_VERSION, "seed": int(seed), "num_utts": int(num_utts),
                "lm_size": int(lm_size), "sample_rate": SAMPLE_RATE}
    stamp_path = out / STAMP
    the_plan = plan(seed, num_utts)
    outputs = _outputs(the_plan["jobs"])
    if stamp_path.is_file():
        try:
            stamp = json.loads(stamp_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise CorpusError(f"{stamp_path}: unreadable build stamp ({e}); delete the folder "
                              f"or the stamp by hand") from None
        if (stamp.get("status") == "complete" and stamp.get("settings") == settings
                and all((out / f).is_file() for f in outputs)):
            log.info("%s: corpus up to date (%s)", out, settings)
            return out
        log.warning("%s: removing the previous build's files (%s, %s)", out,
                    stamp.get("settings"), stamp.get("status"))
        _remove_previous(out, stamp)
    else:
        _check_no_foreign_corpus(out)

    # The stamp is written first: an interrupted build is cleaned up by the next run.
    out.mkdir(parents=True, exist_ok=True)
    stamp = {"status": "building", "settings": settings, "files": outputs}
    stamp_path.write_text(json.dumps(stamp, indent=1), encoding="utf-8")
    for rel in {str(Path(j.path).parent) for j in the_plan["jobs"]}:
        (out / rel).mkdir(parents=True, exist_ok=True)

    samples, phones = _render_all(out, the_plan["jobs"], workers, progress)
    summary = _write_texts(out, the_plan, samples, settings, seed, lm_size)
    rows = [r for split in the_plan["rows"].values() for r in split]  # the phone loss's table (corpus/phones.py)
    (out / PHONES_FILE).write_text("".join(json.dumps({"utt": r["utt"], "text": r["text"], "speaker": r["speaker"],
                                                       "phones": phones[r["audio"]]}, ensure_ascii=False) + "\n"
                                           for r in rows), encoding="utf-8")
    stamp["status"] = "complete"
    stamp_path.write_text(json.dumps(stamp, indent=1), encoding="utf-8")
    log.debug("%s: %d utterances, %.3f h", out, summary["utterances"], summary["hours"])
    return out


def _render_all(out: Path, jobs: list[Job], workers: int, progress: bool) -> tuple[dict[str, int], dict[str, list]]:
    from tqdm import tqdm

    args = [(str(out), j) for j in jobs]
    bar = tqdm(total=len(jobs), desc="rendering corpus", unit="utt", disable=not progress)
    samples: dict[str, int] = {}
    phones: dict[str, list] = {}

    def collect(results) -> None:
        for path, n, segments in results:
            samples[path], phones[path] = n, segments
            bar.update()

    try:
        if workers <= 1:
            collect(map(_render_job, args))
        else:
            # one espeak per process; leaving the `with` terminates the pool, even on Ctrl-C
            with multiprocessing.Pool(workers) as pool:
                collect(pool.imap_unordered(_render_job, args, chunksize=8))
    finally:
        bar.close()
    bad = [(p, n / SAMPLE_RATE) for p, n in samples.items()
           if not MIN_DURATION <= n / SAMPLE_RATE <= (HARD_MAX_DURATION if "_hard/" in p else MAX_DURATION)]
    if bad:
        raise CorpusError(f"{len(bad)} utterances outside {MIN_DURATION}-{MAX_DURATION} s, "
                          f"e.g. {bad[:3]}: the word lists or voice rates need adjusting")
    return samples, phones


def _write_texts(out: Path, the_plan: dict, samples: dict[str, int], settings: dict,
                 seed: int, lm_size: int) -> dict:
    counts: dict = {}
    for split, rows in the_plan["rows"].items():
        with open(out / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for row in rows:
                row = {**row, "duration": round(samples[row["audio"]] / SAMPLE_RATE, 4)}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        counts[split] = _count(rows, [samples[r["audio"]] for r in rows])
    test_texts: set[str] = set()
    for name, items in the_plan["test"].items():
        lines = ["|".join(it[k] for k in ("utt", "prompt_text", "prompt_wav", "target_text",
                                          "gt_wav")) for it in items]
        (out / f"seedtts/{name}/meta.lst").write_text("\n".join(lines) + "\n", encoding="utf-8")
        test_texts |= {t for it in items for t in (it["prompt_text"], it["target_text"])}
    for key, hard in (("test", False), ("hard_cases", True)):  # the hard cases are not counted in num_utts
        rows = [it for name, items in the_plan["test"].items() if name.endswith("_hard") == hard for it in items]
        wavs = [n for p, n in samples.items() if p.startswith("seedtts/") and ("_hard/" in p) == hard]
        counts[key] = {**_count(rows, wavs), "wavs": len(wavs)}
    lm = lm_sentences(seed, lm_size, test_texts)
    (out / "lm_text.txt").write_text("\n".join(lm) + "\n", encoding="utf-8")
    # The character tokenizer's vocabulary covers every text the corpus can ask a model to say.
    all_texts = [r["text"] for rows in the_plan["rows"].values() for r in rows] + sorted(test_texts) + lm
    CharTokenizer.build(all_texts, out / "vocab.txt")
    total = sum(samples.values()) / SAMPLE_RATE
    summary = {"utterances": len(samples) - counts["hard_cases"]["wavs"], "hours": round(total / 3600, 4),
               "settings": settings, "counts": counts, "lm_sentences": len(lm),
               "held_out_speakers": [v.speaker for v in voices(held_out=True)],
               "voices": voice_table()}
    (out / "corpus.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n",
                                     encoding="utf-8")
    return summary


def _count(rows: list[dict], n_samples: list[int]) -> dict:
    return {"items": len(rows), "hours": round(sum(n_samples) / SAMPLE_RATE / 3600, 4),
            "lang": dict(sorted(Counter(r["lang"] for r in rows).items())),
            "speaker": dict(sorted(Counter(r["speaker"] for r in rows).items()))}
