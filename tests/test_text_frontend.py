"""The text frontend (voxlab/text_frontend.py): real inputs against the outputs of the libraries
(wetext + inflect), and against the official VoxCPM release's own normaliser on the same inputs."""
import importlib.util
from pathlib import Path

import pytest

from voxlab.text_frontend import language_of, normalize_text, normalize_texts

# What the recipes write: WeTextProcessing's grammars (wetext 0.1.8) + inflect, with English money
# and the Chinese date's day 2 read as spoken (DIFFERS: where that departs from the release).
DIFFERS = {"$3.50", "It costs $0.99, not $1,234.56.", "£1.01 or €2", "2026年12月2日"}
SPOKEN = [
    ("$3.50", "en", "three dollars and fifty cents"),
    ("It costs $0.99, not $1,234.56.", "en",
     "It costs ninety nine cents, not one thousand two hundred and thirty four dollars and fifty six cents."),
    ("£1.01 or €2", "en", "one pound and one penny or two euros"),
    ("$3.5 million", "en", "three point five million dollars"),
    ("$12.345", "en", "twelve point three four five dollars"),
    ("1999", "en", "nineteen ninety nine"),
    ("Dec 2, 2026", "en", "the second of december, twenty twenty six"),
    ("3%", "en", "three percent"),
    ("50%", "en", "fifty percent"),
    ("Room 101, 3rd floor", "en", "Room one hundred and one, third floor"),
    ("第3章", "zh", "第三章"),
    ("2026年12月2日", "zh", "二零二六年十二月二日"),
    ("休息2日", "zh", "休息两日"),
    ("50%", "zh", "百分之五十"),
    ("价格是$3.50，涨了3%。", "zh", "价格是三点五零美元，涨了百分之三。"),
    ("面积3m²", "zh", "面积三平方米"),
    ("约≈5", "zh", "约约等于五"),
]


@pytest.mark.parametrize("text, lang, spoken", SPOKEN)
def test_numbers_dates_and_symbols_are_spelled_out(text, lang, spoken):
    assert normalize_text(text, lang) == spoken


def test_language_is_guessed_and_others_are_left_alone():
    assert language_of("第3章") == "zh" and language_of("Chapter 3") == "en"
    assert normalize_text("第3章") == "第三章" and normalize_text("Chapter 3") == "Chapter three"
    assert normalize_text("Kapitel 3", "de") == "Kapitel 3"  # no grammar for German: unchanged
    assert normalize_text("  ", "en") == "  "  # the grammar refuses empty input
    assert normalize_text("一点儿", "zh") == "一点儿"  # a transcript keeps its erhua


def test_worker_processes_give_the_same_texts_in_order():
    pairs = [(text, lang) for text, lang, _ in SPOKEN]
    assert normalize_texts(pairs, workers=2) == [spoken for *_, spoken in SPOKEN]


def _official_normalizer():
    """The official release's TextNormalizer, loaded from its file (the package's __init__ imports
    torchaudio, which this machine lacks)."""
    root = Path(importlib.util.find_spec("voxcpm").submodule_search_locations[0])
    spec = importlib.util.spec_from_file_location("voxcpm_text_normalize", root / "utils" / "text_normalize.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TextNormalizer()


def test_same_as_the_official_release_without_erhua():
    official = _official_normalizer()
    for text, _, _ in SPOKEN:
        assert (normalize_text(text) == official.normalize(text)) != (text in DIFFERS), text
