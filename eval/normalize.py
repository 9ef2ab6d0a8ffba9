"""Text normalisation before WER, as Seed-TTS-Eval does it (docs/design.md section 7), plus named variants.

`seedtts` (default, the protocol): strip Chinese (zhon) and ASCII punctuation except the ASCII
apostrophe; English lowercased and split into words as jiwer splits them, no number
normalisation; Chinese hypothesis converted to simplified (zhconv); Chinese split into single
characters (Latin letters inside Chinese become one token each, exactly as the protocol's
character split does).
`f5tts`: the same with the apostrophe stripped too (F5-TTS's evaluation).
`whisper`: English through openai-whisper's EnglishTextNormalizer; Chinese as `seedtts`.
"""
from __future__ import annotations

import re
import string
from functools import lru_cache

VARIANTS = {
    "seedtts": "Seed-TTS-Eval: zhon+ASCII punctuation stripped except the apostrophe; EN "
               "lowercased; ZH hypothesis to simplified (zhconv), split into characters",
    "f5tts": "F5-TTS: as seedtts but the apostrophe is stripped too",
    "whisper": "openai-whisper EnglishTextNormalizer for EN; ZH as seedtts",
}
LANGS = ("en", "zh")

# zhon.hanzi.punctuation (zhon 2.1.1), used only when zhon itself is not installed.
_ZHON_PUNCTUATION = ("＂＃＄％＆＇（）＊＋，－／：；＜＝＞＠［＼］＾＿｀｛｜｝～｟｠｢｣､\u3000、〃〈〉《》「」『』"
                     "【】〔〕〖〗〘〙〚〛〜〝〞〟〰〾〿–—‘’‛“”„‟…‧﹏﹑﹔·．！？｡。")


def zh_punctuation() -> str:
    try:
        from zhon.hanzi import punctuation
    except ImportError:
        return _ZHON_PUNCTUATION
    return punctuation


@lru_cache(maxsize=2)
def _strip_table(keep_apostrophe: bool) -> dict:
    chars = set(zh_punctuation() + string.punctuation)
    if keep_apostrophe:
        chars.discard("'")
    return {ord(c): None for c in chars}


_WHITESPACE_RUN = re.compile(r"\s\s+")


def jiwer_words(text: str) -> list[str]:
    """Words as jiwer's default transform splits them, which the protocol's WER goes through: runs of
    two or more whitespace characters become one space, then the text is split on spaces (so a
    single newline or tab inside a word does not split it)."""
    return [w for w in _WHITESPACE_RUN.sub(" ", text).strip().split(" ") if w]


def has_cjk(text: str) -> bool:
    return any("\u4e00" <= c <= "\u9fff" or "\u3400" <= c <= "\u4dbf" for c in text)


def detect_lang(text: str) -> str:
    """Per-utterance language for `lang="auto"`: any CJK ideograph means Chinese."""
    return "zh" if has_cjk(text) else "en"


@lru_cache(maxsize=1)
def _whisper_english():
    from whisper.normalizers import EnglishTextNormalizer
    return EnglishTextNormalizer()


def to_simplified(text: str) -> str:
    import zhconv
    return zhconv.convert(text, "zh-cn")


def normalize(text: str, lang: str, variant: str = "seedtts", hypothesis: bool = False) -> list[str]:
    """Tokens scored by WER. `hypothesis=True` applies the hypothesis-only step (ZH to simplified)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown normalisation {variant!r}; choose one of {sorted(VARIANTS)}")
    if lang not in LANGS:
        raise ValueError(f"unknown language {lang!r}; choose one of {LANGS}")
    if lang == "zh" and hypothesis:
        text = to_simplified(text)
    if variant == "whisper" and lang == "en":
        return _whisper_english()(text).split()
    text = text.translate(_strip_table(keep_apostrophe=variant != "f5tts"))
    if lang == "zh":
        return [c for c in text if not c.isspace()]
    return jiwer_words(text.lower())
