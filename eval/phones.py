"""Phone alignment of the embedded corpus: which phone espeak-ng speaks when, in `render()`'s audio.

espeak-ng reports a phoneme event (name and sample position) for every phone it synthesises when
it is initialised with phoneme events on; that switch does not change the audio (checked by the
test against `datamodules.corpus.espeak.synth`). The binding below repeats `espeak.synth`'s fresh
load / seed / unload cycle (its module doc explains why) and adds an event-reading callback.
Used by the hidden-state analysis for its per-patch phone probe.
"""
from __future__ import annotations

import _ctypes
import ctypes

import numpy as np

from datamodules.corpus import espeak
from datamodules.corpus.voices import PAD_START, VOICE_BY_ID, to_pinyin

_PHONEME_EVENTS = 0x0001          # espeakINITIALIZE_PHONEME_EVENTS
_END, _PHONEME = 0, 7             # espeakEVENT_LIST_TERMINATED, espeakEVENT_PHONEME
SILENCE = "sil"


class _Event(ctypes.Structure):   # espeak_EVENT (speak_lib.h); `id` is a union read as its char[8]
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


_chunks: list[np.ndarray] = []
_events: list[tuple[int, int, str]] = []   # (type, sample at 22050 Hz, phone name)


def _collect(wav, num_samples, events) -> int:
    if num_samples > 0 and wav:
        _chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
    i = 0
    while events and events[i].type != _END:
        e = events[i]
        name = bytes(e.id).split(b"\0")[0].decode("utf-8", "replace") if e.type == _PHONEME else ""
        _events.append((e.type, e.sample, name))
        i += 1
    return 0


_callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_Event))(_collect)


def synth_with_phones(text: str, voice: str, rate: int, pitch: int, pitch_range: int):
    """espeak.synth's audio (int16 at 22050 Hz) and its phones [(start sample, end sample, name)]."""
    lib_path, data_path = espeak._paths()
    with espeak._lock:
        lib = ctypes.CDLL(lib_path)
        try:
            lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
            sr = lib.espeak_Initialize(espeak._AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, _PHONEME_EVENTS)
            if sr != espeak.SAMPLE_RATE:
                raise RuntimeError(f"espeak_Initialize returned {sr}, expected {espeak.SAMPLE_RATE}")
            lib.espeak_SetSynthCallback(_callback)
            lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
            espeak._check(lib.espeak_SetVoiceByName(voice.encode()), f"voice {voice!r}")
            lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
            for param, value in ((espeak._RATE, rate), (espeak._PITCH, pitch), (espeak._RANGE, pitch_range),
                                 (espeak._VOLUME, 100)):
                espeak._check(lib.espeak_SetParameter(param, int(value), 0), f"espeak_SetParameter({param})")
            lib.espeak_ng_SetRandSeed(ctypes.c_long(0))
            espeak._libc.srand(0)
            _chunks.clear(), _events.clear()
            buf = text.encode("utf-8") + b"\0"
            lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                         ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
            espeak._check(lib.espeak_Synth(buf, len(buf), 0, espeak._POS_CHARACTER, 0, espeak._CHARS_UTF8,
                                           None, None), f"synthesis of {text[:50]!r} with {voice!r}")
            pcm = np.concatenate(_chunks) if _chunks else np.zeros(0, np.int16)
            events = list(_events)
        finally:
            lib.espeak_Terminate()
            handle = lib._handle
            del lib
            _ctypes.dlclose(handle)
    # a phone lasts until the next phone (or the end of the audio)
    marks = [(s, n) for t, s, n in events if t == _PHONEME] + [(len(pcm), "")]
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
