"""The embedded offline speech corpus (`make data`): espeak-ng voices speaking sentences from
our own word lists, in English and Mandarin, with a Seed-TTS-Eval style test set on held-out
voices. See `build.py` for the layout and `voices.py` for the voices."""
from .build import CorpusError, build_corpus
from .voices import SAMPLE_RATE, VOICES, Voice, render, to_pinyin

__all__ = ["build_corpus", "render", "to_pinyin", "CorpusError", "SAMPLE_RATE", "VOICES", "Voice"]
