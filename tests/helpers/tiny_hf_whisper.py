"""A small random Whisper in the transformers folder layout, built offline.

The tokenizer is whisper-large-v3's: the multilingual BPE that openai-whisper ships
(`whisper/assets/multilingual.tiktoken`) turned into vocab + merges by transformers' own
`TikTokenConverter`, with openai-whisper's special tokens (100 languages, the tasks, the 1501
timestamps) added at the ids it gives them; so the ids match the real model's (51866 in all).
The network has tiny dimensions and random weights; generation is capped at `max_length` tokens
with end-of-text suppressed, so every transcript is that many random tokens long and depends on
the audio (an empty transcript would make a parity test pass vacuously).
"""
from __future__ import annotations

from pathlib import Path

NUM_LANGUAGES = 100  # large-v3


def whisper_specials() -> list[tuple[str, int]]:
    """(token, id) of openai-whisper's multilingual special tokens, by id."""
    import whisper.tokenizer as wt

    enc = wt.get_encoding("multilingual", num_languages=NUM_LANGUAGES)
    return sorted(enc._special_tokens.items(), key=lambda kv: kv[1])


def build_tokenizer():
    import whisper
    from transformers import WhisperTokenizer
    from transformers.convert_slow_tokenizer import TikTokenConverter

    bpe = str(Path(whisper.__file__).parent / "assets" / "multilingual.tiktoken")
    vocab, merges = TikTokenConverter(vocab_file=bpe).extract_vocab_merges_from_model(bpe)
    tok = WhisperTokenizer(vocab=vocab, merges=merges)
    specials = whisper_specials()
    # timestamps are ordinary added tokens in the transformers layout; the rest are special
    tok.add_tokens([t for t, _ in specials if not t[2:3].isdigit()], special_tokens=True)
    tok.add_tokens([t for t, _ in specials if t[2:3].isdigit()], special_tokens=False)
    wrong = [(t, i) for t, i in specials if tok.convert_tokens_to_ids(t) != i]
    assert not wrong, f"special token ids differ from openai-whisper's: {wrong[:3]}"
    return tok


def build_tiny_whisper(folder: Path, max_length: int = 12, seed: int = 0) -> Path:
    """Save a random tiny Whisper + processor into `folder` (save_pretrained) and return it."""
    import torch
    from transformers import (WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration,
                              WhisperProcessor)

    tok = build_tokenizer()
    ids = dict(whisper_specials())
    config = WhisperConfig(
        vocab_size=len(tok), num_mel_bins=128, d_model=16, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        max_source_positions=1500, max_target_positions=64, init_std=0.5,
        pad_token_id=ids["<|endoftext|>"], bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|endoftext|>"],
        decoder_start_token_id=ids["<|startoftranscript|>"])
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    gen = model.generation_config
    gen._from_model_config = False  # else from_pretrained drops the Whisper fields below (lang_to_id...)
    gen.decoder_start_token_id = ids["<|startoftranscript|>"]
    gen.eos_token_id = gen.pad_token_id = ids["<|endoftext|>"]
    gen.no_timestamps_token_id = ids["<|notimestamps|>"]
    gen.is_multilingual = True
    gen.lang_to_id = {t: i for t, i in ids.items() if ids["<|startoftranscript|>"] < i < ids["<|translate|>"]}
    gen.task_to_id = {"translate": ids["<|translate|>"], "transcribe": ids["<|transcribe|>"]}
    gen.max_length = max_length
    # end-of-text and the special tokens suppressed: max_length - 4 text tokens every time
    gen.suppress_tokens = list(range(ids["<|endoftext|>"], len(tok)))
    folder = Path(folder)
    model.save_pretrained(folder)
    WhisperProcessor(WhisperFeatureExtractor(feature_size=128), tok).save_pretrained(folder)
    return folder
