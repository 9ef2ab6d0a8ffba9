"""Text frontend for TTS input: numbers, dates, money, percentages and symbols written out as they
are spoken, in English and Chinese ("$3.50" -> "three dollars and fifty cents", "第3章" -> "第三章").

The grammars are WeTextProcessing's (the `wetext` runtime, whose compiled FSTs ship in its wheel:
no download), and English digits the grammar leaves are spelled by inflect: the two libraries the
official VoxCPM release normalises with (`generate(normalize=True)`), so that text normalised for
training reads as the text the released model is given at inference. Some choices differ from that
release, all because a training transcript must keep saying what its audio says: erhua (儿) is
kept; no markdown or emoji cleaning is done; English money with a currency sign ("$3.50",
"$1,234.56", "£0.99") is read as units and cents, as people say it (the grammar reads "three
point five dollars" and drops the "one" of "$1,234.56"); a Chinese date's day 2 reads 二日 (the
grammar says 两日). Other readings of the grammars stay as they are (English four-digit numbers
read as years: "1234 apples" -> "twelve thirty four apples"); tests/test_text_frontend.py pins
the outputs and lists where they differ from the release.
"""
from __future__ import annotations

import re
from functools import lru_cache

LANGS = ("en", "zh")
_CJK = re.compile(r"[\u4e00-\u9fff]")
_DIGITS = re.compile(r"\d+")
# Symbols the Chinese grammar leaves as they are, and how they are read.
_ZH_SYMBOLS = str.maketrans({"²": "平方", "³": "立方", "√": "根号", "≈": "约等于", "<": "小于"})
# A space the Chinese grammar leaves between two characters that are not both ASCII is not spoken.
_ZH_BLANK = re.compile(r"(?<=[^\x00-\x7f]) +|(?<=[\x00-\x7f]) +(?=[^\x00-\x7f])")
_ZH_DAY_TWO = re.compile(r"(?<=月)两(?=[日号])")  # 十二月两日 -> 十二月二日 (两日 alone: "two days")
# An amount with a currency sign and whole cents, not followed by more digits or a scale word
# ("$3.5 million" is the grammar's: it reads that one right).
_MONEY = re.compile(r"([$£€])(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d{2}))?(?![.,]?\d)"
                    r"(?!\s*(?:hundred|thousand|million|billion|trillion)\b)", re.IGNORECASE)
_UNITS = {"$": ("dollar", "dollars", "cent", "cents"), "£": ("pound", "pounds", "penny", "pence"),
          "€": ("euro", "euros", "cent", "cents")}


def language_of(text: str) -> str:
    """"zh" when the text holds a CJK ideograph, else "en" (the official release's rule)."""
    return "zh" if _CJK.search(text) else "en"


@lru_cache(maxsize=None)
def _grammar(lang: str):
    from wetext import Normalizer  # loads its FSTs (a few seconds): only when text is normalised

    return Normalizer(lang=lang, operator="tn", remove_erhua=False)


@lru_cache(maxsize=1)
def _inflect():
    import inflect

    return inflect.engine()


def _words(n: int) -> str:
    return _inflect().number_to_words(n, andword="and", comma="").replace("-", " ")


def _money(m: re.Match) -> str:
    one, many, one_cent, cents_word = _UNITS[m.group(1)]
    whole, cents = int(m.group(2).replace(",", "")), int(m.group(3) or 0)
    parts = [f"{_words(whole)} {one if whole == 1 else many}"] if whole or not cents else []
    if cents:
        parts.append(f"{_words(cents)} {one_cent if cents == 1 else cents_word}")
    return " and ".join(parts)


def normalize_text(text: str, lang: str | None = None) -> str:
    """`text` as spoken. `lang`: the utterance's language ("en", "zh"; None: guessed from the
    text). Text in another language is returned unchanged (the grammars cover en and zh)."""
    lang = (lang or language_of(text)).lower()
    if lang not in LANGS or not text.strip():  # wetext refuses empty input
        return text
    if lang == "zh":  # the grammar reads "=" between numbers wrongly (official release's note)
        text = text.replace("=", "等于")
    if lang == "en":
        text = _MONEY.sub(_money, text)
    out = _grammar(lang).normalize(text)
    if lang == "en":
        return _DIGITS.sub(lambda m: _inflect().number_to_words(m.group()), out)
    return _ZH_DAY_TWO.sub("二", _ZH_BLANK.sub("", out).translate(_ZH_SYMBOLS))


def _normalize_pair(pair: tuple[str, str | None]) -> str:
    return normalize_text(*pair)


def normalize_texts(pairs: list[tuple[str, str | None]], workers: int = 1) -> list[str]:
    """`normalize_text` of each (text, lang), in order; `workers` processes share them (a few ms a
    line: a corpus of millions of lines needs them)."""
    if workers <= 1 or len(pairs) < 2:
        return [normalize_text(*p) for p in pairs]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(_normalize_pair, pairs, chunksize=max(1, min(512, len(pairs) // (4 * workers)))))
