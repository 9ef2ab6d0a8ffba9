"""Minimal ctypes binding to the libespeak-ng 1.52 shipped by the `espeakng-loader` wheel.

`synth(text, voice, rate, pitch, pitch_range)` returns int16 samples at `SAMPLE_RATE` (22050 Hz);
`synth_with_phonemes` also returns the phoneme events espeak reports (sample position, name).
Turning those events on does not change the audio (tested).

Determinism: libespeak-ng keeps state across utterances that no API resets (a static flutter
index in the wave generator, the pitch phase, a clock-seeded noise generator), so the same text
would sound slightly different depending on what was spoken before. Each call therefore loads
the library afresh (dlopen), initialises it in synchronous mode, seeds its noise generator,
speaks, and unloads it (dlclose): about 10 ms of overhead, and the audio depends only on the
arguments. (If something else in the process holds the same libespeak-ng loaded, dlclose
cannot unload it and this isolation is lost; nothing in VoxLab does.)
"""
from __future__ import annotations

import _ctypes
import ctypes
import threading

import numpy as np

SAMPLE_RATE = 22050  # espeak-ng's native rate; checked against espeak_Initialize's answer

_AUDIO_OUTPUT_SYNCHRONOUS = 2  # espeak_Synth blocks; samples arrive through the callback
_CHARS_UTF8, _POS_CHARACTER = 1, 1
_PHONEME_EVENTS = 0x0001          # espeakINITIALIZE_PHONEME_EVENTS
_EVENT_END, _EVENT_PHONEME = 0, 7  # espeakEVENT_LIST_TERMINATED, espeakEVENT_PHONEME
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4  # espeak_PARAMETER
_ERRORS = {-1: "EE_INTERNAL_ERROR", 1: "EE_BUFFER_FULL", 2: "EE_NOT_FOUND"}


class _Event(ctypes.Structure):  # espeak_EVENT (speak_lib.h); `id` is a union read as its char[8]
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


# int callback(short *wav, int num_samples, espeak_EVENT *events)
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_Event))

_lock = threading.Lock()  # the library is process-global: one utterance at a time
_chunks: list[np.ndarray] = []
_phonemes: list[tuple[int, str]] = []  # (sample at SAMPLE_RATE, phoneme name)
_libc = ctypes.CDLL(None)  # the process itself: libc's srand


def _collect(wav, num_samples, events) -> int:
    if num_samples > 0 and wav:
        _chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
    i = 0
    while events and events[i].type != _EVENT_END:
        if events[i].type == _EVENT_PHONEME:
            _phonemes.append((events[i].sample, bytes(events[i].id).split(b"\0")[0].decode("utf-8", "replace")))
        i += 1
    return 0  # 0 = go on synthesising


_callback = _CALLBACK(_collect)  # module-level: ctypes keeps no reference of its own


def _paths() -> tuple[str, bytes]:
    try:
        import espeakng_loader
    except ImportError as e:  # pragma: no cover - install problem
        raise ImportError("the embedded corpus needs the `espeakng-loader` package "
                          "(pip install espeakng-loader)") from e
    return espeakng_loader.get_library_path(), espeakng_loader.get_data_path().encode()


def _check(err: int, what: str) -> None:
    if err != 0:
        raise RuntimeError(f"espeak-ng: {what} failed ({_ERRORS.get(err, err)})")


def synth(text: str, voice: str, rate: int = 175, pitch: int = 50,
          pitch_range: int = 50) -> np.ndarray:
    """Speak `text` with the espeak voice name `voice` (e.g. 'en-us+m3', 'cmn-latn-pinyin+f2').

    rate: words per minute (80-450); pitch, pitch_range: 0-100 (50 = the voice's own).
    Returns int16 mono samples at SAMPLE_RATE.
    """
    return _speak(text, voice, rate, pitch, pitch_range, phoneme_events=False)[0]


def synth_with_phonemes(text: str, voice: str, rate: int = 175, pitch: int = 50,
                        pitch_range: int = 50) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """`synth`'s audio and the phonemes espeak spoke: [(start sample at SAMPLE_RATE, name)]."""
    return _speak(text, voice, rate, pitch, pitch_range, phoneme_events=True)


def _speak(text: str, voice: str, rate: int, pitch: int, pitch_range: int,
           phoneme_events: bool) -> tuple[np.ndarray, list[tuple[int, str]]]:
    lib_path, data_path = _paths()
    with _lock:
        lib = ctypes.CDLL(lib_path)  # a fresh copy of the library's state, see module doc
        try:
            lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                              ctypes.c_int]
            sr = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path,
                                       _PHONEME_EVENTS if phoneme_events else 0)
            if sr != SAMPLE_RATE:
                raise RuntimeError(f"espeak_Initialize({data_path.decode()}) returned {sr}, "
                                   f"expected sample rate {SAMPLE_RATE}")
            lib.espeak_SetSynthCallback(_callback)
            lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
            _check(lib.espeak_SetVoiceByName(voice.encode()), f"voice {voice!r}")
            lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
            for param, value in ((_RATE, rate), (_PITCH, pitch), (_RANGE, pitch_range),
                                 (_VOLUME, 100)):
                _check(lib.espeak_SetParameter(param, int(value), 0),
                       f"espeak_SetParameter({param}, {value})")
            # espeak seeds its noise from the clock; the klatt voices also use libc rand().
            lib.espeak_ng_SetRandSeed(ctypes.c_long(0))
            _libc.srand(0)
            _chunks.clear()
            _phonemes.clear()
            buf = text.encode("utf-8") + b"\0"
            lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint,
                                         ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
                                         ctypes.c_void_p, ctypes.c_void_p]
            _check(lib.espeak_Synth(buf, len(buf), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None),
                   f"synthesis of {text[:50]!r} with {voice!r}")
            out = np.concatenate(_chunks) if _chunks else np.zeros(0, np.int16)
            phonemes = list(_phonemes)
            _chunks.clear()
            _phonemes.clear()
            return out, phonemes
        finally:
            lib.espeak_Terminate()
            handle = lib._handle
            del lib
            _ctypes.dlclose(handle)
