"""The phoneme front end (`text.kind: phoneme`): espeak-ng's English phonemes and pinyin for
Chinese, ids from a fixed symbol list, rebuilt from a checkpoint's record."""
from voxlab.phonemes import phonemize
from voxlab.text import PhonemeTokenizer, build_tokenizer, tokenizer_spec


def test_english_is_espeak_ipa_and_chinese_is_tone_pinyin():
    en, zh = phonemize(["The cat sat, then ran.", "你好，世界。"])
    assert en.startswith("ð") and "kˈæt" in en and en.endswith(".") and ", " in en
    assert zh == "ni3 hao3, shi4 jie4."


def test_ids_are_fixed_and_the_spec_rebuilds_the_tokenizer():
    tok = PhonemeTokenizer()
    ids = tok.encode("Where did you keep the heavy tiger?")
    assert ids and all(128 <= i < tok.vocab_size for i in ids) and not tok.unknown("heavy tiger")
    again = build_tokenizer(tokenizer_spec(tok))
    assert isinstance(again, PhonemeTokenizer) and again.encode("heavy tiger") == tok.encode("heavy tiger")
    tok.warm(["one two", "three"])  # many texts in one call of the library
    assert tok.decode(tok.encode("one two")) == tok.phonemes("one two")
