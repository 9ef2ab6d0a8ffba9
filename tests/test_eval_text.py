"""Seed-TTS-Eval normalisation and WER: known answers."""
import pytest

from eval.normalize import _ZHON_PUNCTUATION, detect_lang, normalize, zh_punctuation
from eval.wer import ErrorCounts, corpus_wer, count_errors, mean_wer


# ---------------------------------------------------------------- normalisation

def test_english_lowercased_punctuation_stripped_apostrophe_kept():
    assert normalize("Hello, World! It's 42 - OK?", "en") == ["hello", "world", "it's", "42", "ok"]


def test_english_hyphen_joins_words_as_in_the_protocol():
    # the protocol deletes punctuation characters without inserting spaces
    assert normalize("well-known e.g. U.S.A.", "en") == ["wellknown", "eg", "usa"]


def test_f5tts_variant_strips_the_apostrophe():
    assert normalize("It's Tom's.", "en", "f5tts") == ["its", "toms"]


def test_curly_apostrophe_is_zh_punctuation_and_stripped():
    # zhon lists ’ as punctuation: the protocol turns "don’t" into "dont" (kept faithfully)
    assert normalize("Don’t", "en") == ["dont"]


def test_whisper_variant_uses_whisper_english_normalizer():
    assert normalize("Mr. Smith's ten dollars", "en", "whisper") == normalize(
        "mister smith's $10", "en", "whisper")
    assert normalize("Mr. Smith", "en") == ["mr", "smith"]  # default: no such expansion


def test_chinese_split_into_characters_and_both_punctuations_stripped():
    assert normalize("你好，世界！(测试)...", "zh") == list("你好世界测试")
    assert normalize("“引号”《书名》、顿号；", "zh") == list("引号书名顿号")


def test_latin_letters_inside_chinese_become_one_token_each():
    assert normalize("我们用AI技术", "zh") == ["我", "们", "用", "A", "I", "技", "术"]
    assert normalize("用 GPU 跑", "zh") == ["用", "G", "P", "U", "跑"]


def test_traditional_to_simplified_only_for_the_hypothesis():
    assert normalize("語音識別", "zh", hypothesis=True) == list("语音识别")
    assert normalize("語音識別", "zh") == list("語音識別")  # the reference is left as given


def test_empty_and_punctuation_only_texts_give_no_tokens():
    assert normalize("", "en") == []
    assert normalize("。！？", "zh", hypothesis=True) == []


def test_unknown_variant_or_language_is_refused():
    with pytest.raises(ValueError, match="normalisation"):
        normalize("a", "en", "nope")
    with pytest.raises(ValueError, match="language"):
        normalize("a", "fr")


def test_builtin_punctuation_matches_zhon_when_installed():
    pytest.importorskip("zhon")
    assert set(zh_punctuation()) == set(_ZHON_PUNCTUATION)


def test_detect_lang():
    assert detect_lang("Hello there") == "en"
    assert detect_lang("我们用AI技术") == "zh"


# ---------------------------------------------------------------- WER

@pytest.mark.parametrize("ref,hyp,expected", [
    ("a b c", "a b c", (0, 0, 0, 3)),
    ("a b c", "a x c", (1, 0, 0, 3)),
    ("a b c d", "a c d", (0, 1, 0, 4)),
    ("a b", "x a b", (0, 0, 1, 2)),
    ("a b c", "a x c d", (1, 0, 1, 3)),
    ("a b c", "", (0, 3, 0, 3)),
])
def test_error_counts(ref, hyp, expected):
    c = count_errors(ref.split(), hyp.split())
    assert (c.S, c.D, c.I, c.N) == expected
    assert c.wer == pytest.approx(sum(expected[:3]) / expected[3])


def test_wer_can_exceed_one_with_insertions():
    assert count_errors(["a"], ["x", "y", "z"]).wer == pytest.approx(3.0)


def test_empty_reference_is_refused():
    with pytest.raises(ValueError, match="empty reference"):
        count_errors([], ["a"])


def test_mean_versus_corpus_wer():
    counts = [ErrorCounts(1, 0, 0, 2), ErrorCounts(0, 0, 0, 8)]  # 50% and 0%
    assert mean_wer(counts) == pytest.approx(25.0)       # the protocol's mean x100
    assert corpus_wer(counts) == pytest.approx(10.0)     # 1 error / 10 tokens


def test_chinese_cer_end_to_end():
    ref = normalize("今天天气很好。", "zh")
    hyp = normalize("今天天氣很好啊", "zh", hypothesis=True)  # traditional 氣, one inserted 啊
    c = count_errors(ref, hyp)
    assert (c.S, c.D, c.I, c.N) == (0, 0, 1, 6)
