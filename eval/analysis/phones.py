"""Phone alignment of the embedded corpus: which phone espeak-ng speaks when, in `render()`'s audio.

Built on the phoneme events of `datamodules.corpus.espeak.synth_with_phonemes` (the same audio as
`espeak.synth`, tested). Used by the hidden-state analysis for its per-patch phone probe.
"""
from __future__ import annotations

from datamodules.corpus import espeak
from datamodules.corpus.voices import PAD_START, VOICE_BY_ID, to_pinyin

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


def phone_segments(text: str, lang: str, speaker_id: str) -> list[tuple[float, float, str]]:
    """[(start s, end s, phone)] in the time base of `datamodules.corpus.render(text, lang, speaker_id)`."""
    voice = VOICE_BY_ID.get(speaker_id)
    if voice is None:
        raise KeyError(f"unknown speaker {speaker_id!r}; known: {sorted(VOICE_BY_ID)}")
    spoken = to_pinyin(text) if lang == "zh" else text
    _, phones = synth_with_phones(spoken, voice.espeak, voice.rate, voice.pitch, voice.pitch_range)
    sr = espeak.SAMPLE_RATE
    return [(PAD_START + s / sr, PAD_START + e / sr, phone_name(n)) for s, e, n in phones]


def patch_labels(segments: list[tuple[float, float, str]], n_patches: int, patch_seconds: float) -> list[str]:
    """The phone at the centre of each patch (silence outside every segment)."""
    out = []
    for j in range(n_patches):
        t = (j + 0.5) * patch_seconds
        out.append(next((n for s, e, n in segments if s <= t < e), SILENCE))
    return out
