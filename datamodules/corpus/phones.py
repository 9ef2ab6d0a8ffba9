"""Phone alignment of the embedded corpus: which phone espeak-ng speaks when, in `render()`'s audio.

Built on the phoneme events of `datamodules.corpus.espeak.synth_with_phonemes` (the same audio as
`espeak.synth`, tested). Used by the hidden-state analysis for its per-patch phone probe, and by
training's phone loss (`model.phones`): `corpus_phones` keeps a corpus's phone table in
`<corpus>/phones.jsonl`, made once (about 15 ms per utterance, two processes).
"""
from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import datamodules.corpus.espeak as espeak
from datamodules.corpus.voices import PAD_START, VOICE_BY_ID, corpus_wav, spoken_form, voice_for
from voxlab.safe_io import write_text_atomic

SILENCE = "sil"


def synth_with_phones(text: str, voice: str, rate: int, pitch: int, pitch_range: int):
    """espeak.synth's audio (int16 at 22050 Hz) and its phones [(start sample, end sample, name)]."""
    pcm, phonemes = espeak.synth_with_phonemes(text, voice, rate, pitch, pitch_range)
    # a phone lasts until the next phone (or the end of the audio)
    marks = phonemes + [(len(pcm), "")]
    phones = [(s, e, n) for (s, n), (e, _) in zip(marks, marks[1:]) if e > s]
    return pcm, phones


def phone_name(raw: str) -> str:
    """Stress marks dropped ("'aU" -> "aU"); espeak's pauses ("_", "_:", "_|") are silence."""
    return SILENCE if raw.startswith("_") or not raw else raw.lstrip("',")


def _spoken_phones(text: str, lang: str, speaker_id: str):
    """espeak's int16 audio of `text` by `speaker_id` and its phones [(start s, end s, phone)] in the
    time base of the corpus audio (after the leading pad)."""
    voice = voice_for(speaker_id, lang)
    pcm, phones = synth_with_phones(spoken_form(text, lang), voice.espeak, voice.rate, voice.pitch,
                                    voice.pitch_range)
    sr = espeak.SAMPLE_RATE
    return pcm, [(PAD_START + s / sr, PAD_START + e / sr, phone_name(n)) for s, e, n in phones]


def render_with_phones(text: str, lang: str, speaker_id: str):
    """`voices.render`'s audio and its phones [(start s, end s, phone)] in that audio's time base."""
    pcm, segments = _spoken_phones(text, lang, speaker_id)
    return corpus_wav(pcm, f"{text!r} ({speaker_id})"), segments


def phone_segments(text: str, lang: str, speaker_id: str) -> list[tuple[float, float, str]]:
    """[(start s, end s, phone)] in the time base of `datamodules.corpus.render(text, lang, speaker_id)`."""
    return _spoken_phones(text, lang, speaker_id)[1]


def patch_labels(segments: list[tuple[float, float, str]], n_patches: int, patch_seconds: float) -> list[str]:
    """The phone at the centre of each patch (silence outside every segment)."""
    out = []
    for j in range(n_patches):
        t = (j + 0.5) * patch_seconds
        out.append(next((n for s, e, n in segments if s <= t < e), SILENCE))
    return out


PHONES_FILE = "phones.jsonl"  # one line per utterance: {"utt", "text", "speaker", "phones": [[start s, end s, name]]}


def _segments_of(row: tuple[str, str, str, str]) -> tuple[str, dict]:
    utt, text, lang, speaker = row
    phones = [[round(s, 4), round(e, 4), n] for s, e, n in phone_segments(text, lang, speaker)]
    return utt, {"utt": utt, "text": text, "speaker": speaker, "phones": phones}


def corpus_phones(root: str | Path, entries, workers: int = 2, progress: bool = True) -> dict[str, list]:
    """{utt: [(start s, end s, phone)]} of embedded-corpus `entries` (with .utt, .text, .lang, .speaker),
    read from `<root>/phones.jsonl` and completed there for any utterance it lacks. Only the embedded
    corpus's voices have phone events: another speaker is a KeyError naming it."""
    path = Path(root) / PHONES_FILE
    known: dict[str, list] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            known[row["utt"]] = row
    def current(e) -> bool:  # a row of another corpus's utterance of the same name is made again
        row = known.get(e.utt)
        return row is not None and row["text"] == e.text and row["speaker"] == e.speaker
    todo = [(e.utt, e.text, e.lang, e.speaker) for e in entries if not current(e)]
    strangers = sorted({s for _, _, _, s in todo if s not in VOICE_BY_ID})
    if strangers:
        raise KeyError(f"phone timings exist only for the embedded corpus's voices ({sorted(VOICE_BY_ID)}); "
                       f"{len(strangers)} other speakers, e.g. {strangers[:3]} (turn model.phones off for this data)")
    if todo:
        from tqdm import tqdm

        with multiprocessing.Pool(workers) as pool:
            results = pool.imap(_segments_of, todo, chunksize=16)
            known.update(tqdm(results, total=len(todo), desc=f"phone timings -> {path}", disable=not progress))
        write_text_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in known.values()))
    return {e.utt: known[e.utt]["phones"] for e in entries}


class PhoneLabels:
    """Per-patch phone ids of a corpus's utterances, for the phone loss (`model.phones`): the
    phone spoken at each patch's centre, ids by sorted phone name (silence included)."""

    def __init__(self, table: dict[str, list], patch_seconds: float):
        self.table, self.patch_seconds = table, patch_seconds
        self.names = sorted({n for segs in table.values() for _, _, n in segs} | {SILENCE})
        self.ids = {n: i for i, n in enumerate(self.names)}

    def __call__(self, utt: str, n_patches: int) -> list[int]:
        return [self.ids[n] for n in patch_labels(self.table[utt], n_patches, self.patch_seconds)]
