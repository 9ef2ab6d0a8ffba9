"""The corpus voices and `render()`, which speaks any sentence with any of them.

A voice (speaker id) is an espeak-ng language voice + a variant from the shipped `voices/!v`
folder + rate/pitch settings. Held-out voices never appear in train/val: they make the
Seed-TTS-style test set (zero-shot cloning of unseen voices).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import soxr

import datamodules.corpus.espeak as espeak

SAMPLE_RATE = 16000
PEAK = 0.9  # every utterance is peak-normalised: the espeak variants differ a lot in level
PAD_START, PAD_END = 0.10, 0.15  # seconds of silence around the speech (espeak leaves none)


@dataclass(frozen=True)
class Voice:
    speaker: str
    lang: str        # "en" | "zh"
    espeak: str      # espeak voice name + variant
    rate: int        # words per minute
    pitch: int       # 0-100, 50 = the variant's own
    pitch_range: int = 50
    held_out: bool = False


VOICES = [
    Voice("en_v0", "en", "en-us+m3", 170, 45),
    Voice("en_v1", "en", "en-us+f2", 165, 55),
    Voice("en_v2", "en", "en+m1", 160, 40, 60),                  # British
    Voice("en_v3", "en", "en+f4", 175, 50, 40),
    Voice("en_v4", "en", "en-gb-scotland+m6", 160, 60),
    Voice("en_v5", "en", "en-us-nyc+f1", 180, 45, 65),
    Voice("en_v6", "en", "en-gb-x-rp+m2", 165, 50, held_out=True),
    Voice("en_v7", "en", "en-us+belinda", 170, 50, held_out=True),
    Voice("zh_v0", "zh", "cmn-latn-pinyin+m3", 200, 45),
    Voice("zh_v1", "zh", "cmn-latn-pinyin+f2", 210, 55),
    Voice("zh_v2", "zh", "cmn-latn-pinyin+m6", 190, 60, 60),
    Voice("zh_v3", "zh", "cmn-latn-pinyin+f4", 205, 50, held_out=True),
]
VOICE_BY_ID = {v.speaker: v for v in VOICES}


def voices(lang: str | None = None, held_out: bool | None = None) -> list[Voice]:
    return [v for v in VOICES if (lang is None or v.lang == lang)
            and (held_out is None or v.held_out == held_out)]


def voice_table() -> list[dict]:
    return [asdict(v) for v in VOICES]


_ZH_PUNCT = {"，": ", ", "。": ". ", "？": "? ", "！": "! "}
_PINYIN_FIXES = {  # pypinyin reads the measure word 只 as zhi3 ("only") before these nouns
    "只小猫": [["zhī"], ["xiǎo"], ["māo"]],
    "只小狗": [["zhī"], ["xiǎo"], ["gǒu"]],
}
_pinyin_ready = False


def to_pinyin(text: str) -> str:
    """Chinese text -> tone-number pinyin for the cmn-latn-pinyin voice ('ni3 hao3 .')."""
    global _pinyin_ready
    from pypinyin import Style, lazy_pinyin, load_phrases_dict
    if not _pinyin_ready:
        load_phrases_dict(_PINYIN_FIXES)
        _pinyin_ready = True
    syllables = lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True)
    out = " ".join(_ZH_PUNCT.get(s, s) for s in syllables)
    return " ".join(out.split()).replace(" ,", ",").replace(" .", ".").replace(
        " ?", "?").replace(" !", "!")


def voice_for(speaker_id: str, lang: str) -> Voice:
    voice = VOICE_BY_ID.get(speaker_id)
    if voice is None:
        raise KeyError(f"unknown speaker {speaker_id!r}; known: {sorted(VOICE_BY_ID)}")
    if voice.lang != lang:
        raise ValueError(f"speaker {speaker_id!r} speaks {voice.lang!r}, not {lang!r}")
    return voice


def spoken_form(text: str, lang: str) -> str:
    """What the espeak voice is given: pinyin for Chinese, the text itself otherwise."""
    return to_pinyin(text) if lang == "zh" else text


def corpus_wav(pcm: np.ndarray, what: str) -> np.ndarray:
    """espeak's int16 samples -> the corpus form: float32 at 16 kHz, peak-normalised, padded."""
    if pcm.size == 0:
        raise RuntimeError(f"espeak-ng produced no audio for {what}")
    wav = soxr.resample(pcm.astype(np.float32) / 32768.0, espeak.SAMPLE_RATE, SAMPLE_RATE,
                        quality="HQ")
    wav = wav * (PEAK / max(float(np.abs(wav).max()), 1e-6))
    pad = [np.zeros(int(s * SAMPLE_RATE), np.float32) for s in (PAD_START, PAD_END)]
    return np.concatenate([pad[0], wav.astype(np.float32), pad[1]])


def render(text: str, lang: str, speaker_id: str) -> np.ndarray:
    """Speak `text` with voice `speaker_id`: float32 mono at 16 kHz, deterministic.

    The corpus wav files are exactly this, stored as 16-bit PCM (`corpus.phones.render_with_phones`
    gives the same audio with its phone timings).
    """
    voice = voice_for(speaker_id, lang)
    pcm = espeak.synth(spoken_form(text, lang), voice.espeak, voice.rate, voice.pitch, voice.pitch_range)
    return corpus_wav(pcm, f"{text!r} ({speaker_id})")
