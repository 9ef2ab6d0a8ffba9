"""Text frontend behind one interface: `encode(text) -> list[int]`, `vocab_size`, and the two
audio boundary ids of the sequence layout (101 = audio start, 102 = audio end, as in VoxCPM).

- `CharTokenizer`: one id per character, for the embedded corpus. Ids below 128 are reserved
  for special tokens so that 101/102 mean the same as in the official vocabulary.
- `PhonemeTokenizer`: one id per phoneme symbol (espeak-ng IPA for English, pinyin for Chinese):
  the tiny scale's front end, which spares a small model learning English spelling.
- `HFTokenizer`: a Hugging Face tokenizer from a local folder (LlamaTokenizerFast files), with
  multi-character Chinese tokens split into single characters (docs/design.md section 3). The
  official rule (default, `cjk_split="official"`): a token is split when, without its "▁" marks,
  it is itself a vocabulary entry of 2+ characters all in U+4E00-U+9FFF; the "▁" is then dropped.
  `cjk_split="any"` (the rule of earlier VoxLab versions) splits every token whose text after the
  leading "▁" is 2+ CJK characters (extension A and compatibility ideographs included).
"""
from __future__ import annotations

import unicodedata
from pathlib import Path

from voxlab.phonemes import phonemize

PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
AUDIO_START_ID, AUDIO_END_ID = 101, 102
FIRST_CHAR_ID = 128


def is_cjk(char: str) -> bool:
    return "\u4e00" <= char <= "\u9fff" or "\u3400" <= char <= "\u4dbf" or "\uf900" <= char <= "\ufaff"


class CharTokenizer:
    """Characters listed in a vocabulary file (one per line, in id order from 128)."""

    kind = "char"
    audio_start_id, audio_end_id, pad_id = AUDIO_START_ID, AUDIO_END_ID, PAD_ID

    def __init__(self, chars: list[str]):
        if len(set(chars)) != len(chars):
            raise ValueError("character vocabulary has duplicates")
        self.chars = list(chars)
        self.ids = {c: i + FIRST_CHAR_ID for i, c in enumerate(self.chars)}
        self.source = "a character list"

    @classmethod
    def from_file(cls, path: str | Path) -> "CharTokenizer":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: character vocabulary not found (`make data` writes it)")
        lines = path.read_text(encoding="utf-8").split("\n")
        tok = cls([line for line in lines if line != ""])
        tok.source = str(path)
        return tok

    @classmethod
    def build(cls, texts, path: str | Path | None = None) -> "CharTokenizer":
        chars = sorted({unicodedata.normalize("NFC", c) for t in texts for c in t if c not in "\n\r"})
        tok = cls(chars)
        if path is not None:
            Path(path).write_text("\n".join(chars) + "\n", encoding="utf-8")
        return tok

    @property
    def vocab_size(self) -> int:
        return FIRST_CHAR_ID + len(self.chars)

    def vocabulary(self) -> dict[str, int]:
        """Token text -> id, the space written "▁" as in Llama vocabularies (comparable with them)."""
        space = " " if "\u2581" in self.ids else "\u2581"
        return {(space if c == " " else c): i for c, i in self.ids.items()}

    def encode(self, text: str) -> list[int]:
        return [self.ids.get(c, UNK_ID) for c in unicodedata.normalize("NFC", text)]

    def unknown(self, text: str) -> list[str]:
        """Each character of `text` (NFC) that `encode` turns into <unk>, in order."""
        return [c for c in unicodedata.normalize("NFC", text) if c not in self.ids]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i - FIRST_CHAR_ID] for i in ids if i >= FIRST_CHAR_ID)


class HFTokenizer:
    """A local Hugging Face tokenizer folder; Chinese multi-character tokens become characters."""

    kind = "hf"
    audio_start_id, audio_end_id = AUDIO_START_ID, AUDIO_END_ID
    CJK_SPLITS = ("official", "any")

    def __init__(self, folder: str | Path, cjk_split: str = "official"):
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: tokenizer folder not found (expected tokenizer.json / "
                                    "tokenizer_config.json of a LlamaTokenizerFast)")
        if cjk_split not in self.CJK_SPLITS:
            raise ValueError(f"cjk_split must be one of {self.CJK_SPLITS}, got {cjk_split!r}")
        from transformers import AutoTokenizer

        self.source, self.cjk_split = str(folder), cjk_split
        self.tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        self.pad_id = self.tok.pad_token_id if self.tok.pad_token_id is not None else PAD_ID
        # the vocabulary's own multi-character words of the basic CJK block (the official set)
        self.words = {t for t in self.tok.get_vocab() if len(t) > 1 and all("\u4e00" <= c <= "\u9fff" for c in t)}

    @property
    def vocab_size(self) -> int:
        return len(self.tok)

    def vocabulary(self) -> dict[str, int]:
        """Token text -> id (what an LM's embedding rows mean)."""
        return dict(self.tok.get_vocab())

    def _pieces(self, token: str) -> list[str] | None:
        """The characters `token` is split into, or None to keep it."""
        if self.cjk_split == "official":
            bare = token.replace("\u2581", "")
            return list(bare) if bare in self.words else None
        bare = token.lstrip("\u2581")
        return list(bare) if len(bare) > 1 and all(is_cjk(c) for c in bare) else None

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for tid in self.tok.encode(text, add_special_tokens=False):
            pieces = self._pieces(self.tok.convert_ids_to_tokens(tid))
            ids.extend([tid] if pieces is None else self.tok.convert_tokens_to_ids(pieces))
        return ids

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids)

    def unknown(self, text: str) -> list[str]:
        """Each character of `text` the tokenizer writes as <unk> or drops (none with byte fallback)."""
        unk = self.tok.unk_token_id

        def lost(c: str) -> bool:
            ids = self.tok.encode(c, add_special_tokens=False)
            return not ids or (unk is not None and unk in ids)

        bad = {c for c in set(text) if not c.isspace() and lost(c)}
        return [c for c in text if c in bad]


class PhonemeTokenizer:
    """One id per phoneme symbol (voxlab.phonemes: espeak-ng's IPA for English, tone-number pinyin
    for Chinese), for `text.kind: phoneme`. The symbol list is fixed (SYMBOLS: espeak's English
    inventory, pinyin's letters and tones, pauses), so every model of this kind shares the ids.
    Phonemes are computed once per distinct text and kept; `warm(texts)` phonemizes many in one
    call of the library (a dataset's texts), which is much faster than one by one."""

    kind = "phoneme"
    audio_start_id, audio_end_id, pad_id = AUDIO_START_ID, AUDIO_END_ID, PAD_ID
    SYMBOLS = (" !,.:;?12345abcdefghijklmnopqrstuvwxyzæçðøŋœɐɑɒɔɕɘəɚɛɜɞɟɡɣɤɨɪɫɬɯɰɱɲɳɵɸɹɺɻɽɾʀʁʂʃʈʉʊʋʌʍʎʏʐʑʒʔʕʝʰʲʷˈˌːˑ"
               "̩̪̃͡θχᵻ")

    def __init__(self, voice: str = "en-us"):
        self.voice = voice
        self.chars = list(dict.fromkeys(self.SYMBOLS))
        self.ids = {c: i + FIRST_CHAR_ID for i, c in enumerate(self.chars)}
        self._phonemes: dict[str, str] = {}
        self.source = f"phonemes (espeak-ng {voice}, pinyin)"

    @property
    def vocab_size(self) -> int:
        return FIRST_CHAR_ID + len(self.chars)

    def vocabulary(self) -> dict[str, int]:
        return dict(self.ids)

    def warm(self, texts) -> None:
        todo = sorted({unicodedata.normalize("NFC", t) for t in texts} - set(self._phonemes))
        self._phonemes.update(zip(todo, phonemize(todo, self.voice)))

    def phonemes(self, text: str) -> str:
        text = unicodedata.normalize("NFC", text)
        if text not in self._phonemes:
            self.warm([text])
        return self._phonemes[text]

    def encode(self, text: str) -> list[int]:
        return [self.ids.get(c, UNK_ID) for c in self.phonemes(text)]

    def unknown(self, text: str) -> list[str]:
        """Symbols of the text's phonemes outside the inventory, and characters that gave no phoneme."""
        return [c for c in self.phonemes(text) if c not in self.ids]

    def decode(self, ids: list[int]) -> str:
        inv = {i: c for c, i in self.ids.items()}
        return "".join(inv.get(i, "") for i in ids)


class TokenizerSpecError(ValueError):
    """A tokenizer description (config `text` section or a checkpoint's record) not understood."""


def build_tokenizer(spec, source: str = "text") -> CharTokenizer | HFTokenizer | PhonemeTokenizer:
    """The tokenizer a mapping describes: the `text` config section or what `tokenizer_spec`
    recorded: `kind: char` with `vocab: <file>` or the list `chars`, or `kind: hf` with
    `path: <folder>`. `source` names the mapping in errors."""
    kind = spec.get("kind")
    if kind == "char" and spec.get("chars"):
        return CharTokenizer(list(spec["chars"]))
    if kind == "char" and spec.get("vocab"):
        return CharTokenizer.from_file(spec["vocab"])
    if kind == "hf" and spec.get("path"):
        return HFTokenizer(spec["path"])
    if kind == "phoneme":
        return PhonemeTokenizer(spec.get("voice") or "en-us")
    if kind not in ("char", "hf", "phoneme"):
        raise TokenizerSpecError(f"{source}: kind must be 'char', 'hf' or 'phoneme', got {kind!r}")
    raise TokenizerSpecError(f"{source}: tokenizer spec not understood: {dict(spec)} (expected kind 'char' with "
                             "'chars' or 'vocab', or kind 'hf' with 'path')")


def tokenizer_spec(tokenizer: CharTokenizer | HFTokenizer) -> dict:
    """What `build_tokenizer` rebuilds `tokenizer` from: a character list, or an HF folder's path."""
    if tokenizer.kind == "char":
        return {"kind": "char", "chars": list(tokenizer.chars)}
    if tokenizer.kind == "phoneme":
        return {"kind": "phoneme", "voice": tokenizer.voice}
    return {"kind": "hf", "path": tokenizer.source}
