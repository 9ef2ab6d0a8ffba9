"""Text -> phonemes, for the phoneme text front end (`text.kind: phoneme`, voxlab.text).

English: espeak-ng's own phonemes in IPA (the `espeakng-loader` wheel's libespeak-ng 1.52, voice
en-us): the pronunciation the embedded corpus is spoken with, so a tiny model learns ~50 sounds
instead of English spelling. Chinese: tone-number pinyin (pypinyin), what the corpus's Mandarin
voice reads. Words are kept apart by spaces; punctuation that marks a pause stays.

The library is loaded for each call and unloaded after it (as datamodules/corpus/espeak.py does
for synthesis, whose determinism needs a fresh library state), so phonemize a list in one call.
"""
from __future__ import annotations

import _ctypes
import ctypes
import re
import threading
from functools import lru_cache

_lock = threading.Lock()
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_AUDIO_OUTPUT_RETRIEVAL, _CHARS_UTF8, _PHONEMES_IPA = 1, 1, 0x02
_PAUSES = re.compile(r"\s*([,.?!;:，。？！；：])\s*")
_ZH_PUNCT = str.maketrans({"，": ",", "。": ".", "？": "?", "！": "!", "；": ";", "：": ":"})


def phonemize(texts: list[str], voice: str = "en-us") -> list[str]:
    """Phoneme strings of `texts`: Chinese (any CJK character) as pinyin, the rest through espeak."""
    chinese = [bool(_CJK.search(t)) for t in texts]
    english = iter(_espeak([t for t, zh in zip(texts, chinese) if not zh], voice))
    return [_pinyin(t) if zh else next(english) for t, zh in zip(texts, chinese)]


@lru_cache(maxsize=65536)
def _pinyin(text: str) -> str:
    from pypinyin import Style, lazy_pinyin

    syllables = lazy_pinyin(text.translate(_ZH_PUNCT), style=Style.TONE3, neutral_tone_with_five=True)
    return _PAUSES.sub(r"\1 ", " ".join(" ".join(syllables).split())).strip()


def _espeak(texts: list[str], voice: str) -> list[str]:
    if not texts:
        return []
    import espeakng_loader

    with _lock:
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        try:
            lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
            if lib.espeak_Initialize(_AUDIO_OUTPUT_RETRIEVAL, 0, espeakng_loader.get_data_path().encode(), 0) <= 0:
                raise RuntimeError("espeak-ng did not initialise (espeakng-loader's library and data)")
            lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
            if lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"espeak-ng has no voice {voice!r}")
            lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
            lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
            return [_one(lib, t) for t in texts]
        finally:
            lib.espeak_Terminate()
            handle = lib._handle
            del lib
            _ctypes.dlclose(handle)


def _one(lib, text: str) -> str:
    """One text, clause by clause; the clause's closing punctuation is kept as a pause mark."""
    pieces = []
    for clause in re.split(r"(?<=[,.?!;:])\s+", text.strip()):
        buf = ctypes.c_char_p(clause.encode("utf-8"))
        ptr = ctypes.pointer(buf)
        parts = []
        while ptr.contents.value:
            ph = lib.espeak_TextToPhonemes(ptr, _CHARS_UTF8, _PHONEMES_IPA)
            if ph:
                parts.append(ph.decode("utf-8"))
        mark = clause[-1] if clause and clause[-1] in ",.?!;:" else ""
        pieces.append(" ".join(" ".join(parts).split()) + mark)
    return _PAUSES.sub(r"\1 ", " ".join(pieces)).strip()
