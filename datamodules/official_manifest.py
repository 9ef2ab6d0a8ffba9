"""The official VoxCPM fine-tuning manifest, read as it is beside ours (docs/design.md section 10).

An official line is `{"audio", "text"}` with optional `duration`, `ref_audio` and `dataset_id`;
`datamodules.manifest.read_manifest` reads both formats through the hooks here:
- `resolve_audio`: a relative path names a file beside the manifest (our convention) when one is
  there, else in the working directory (the official trainer opens paths from there);
- `official_fields`: `ref_audio` (checked as the audio is: `datamodules.manifest.checked_audio`) as an
  Entry of its own, and `dataset_id` (a whole number >= 0; the official trainer uses it only to count
  audio per dataset in its logs);
- `reference_entries`: the reference audios the latent cache encodes, in the target form
  (right-padded to whole patches: the official packer encodes a reference as it encodes a target);
- `ReferenceTTSDataset`: items with a reference are packed in the official layout
  `[103, ref patches, 104, text, 101, target patches, 102]` with the loss and the stop label on the
  target only (`models.packing.pack_with_reference`); other items are packed as before.
"""
from __future__ import annotations

import math
from pathlib import Path

from datamodules.latents import latent_name
from datamodules.manifest import BadAudio, Entry, checked_audio
from datamodules.tts import TTSDataset
from voxlab.audio import file_stamp
from models.packing import pack_with_reference

REF_START_ID, REF_END_ID = 103, 104  # the official audio_prompt_start_id / audio_prompt_end_id


BadField = BadAudio  # a bad official field: `kind` (the report's category) and `detail`


def resolve_audio(manifest: Path, value: str) -> Path:
    beside = (manifest.parent / value).resolve()
    if beside.is_file() or Path(value).is_absolute():
        return beside
    in_cwd = Path(value).resolve()
    return in_cwd if in_cwd.is_file() else beside


def _reference(manifest: Path, value, check_audio: bool, max_duration: float) -> Entry:
    if not isinstance(value, str) or not value:
        raise BadField("not a string", f"`ref_audio`: {value!r}")
    path = resolve_audio(manifest, value)
    if not check_audio:
        return Entry(f"{value} (ref_audio)", path, "", 0.0)
    # as the target is checked: NaN/inf samples, and longer than data.max_duration (it is packed into
    # the same sequence as the target, so an hour-long reference would take the batch's memory)
    info = checked_audio(path, "ref_audio ", max_duration=max_duration)
    return Entry(f"{value} (ref_audio)", path, "", info.frames / info.samplerate, stamp=file_stamp(path))


def official_fields(item: dict, manifest: Path, check_audio: bool = True,
                    max_duration: float = float("inf")) -> tuple[Entry | None, int]:
    """(the reference audio as an Entry or None, dataset_id) of one manifest line; BadField if wrong."""
    ref = item.get("ref_audio")
    dataset_id = item.get("dataset_id", 0)
    if isinstance(dataset_id, bool) or not isinstance(dataset_id, int) or dataset_id < 0:
        raise BadField("bad dataset_id", f"`dataset_id` must be a whole number >= 0, got {dataset_id!r}")
    return (None if ref is None else _reference(manifest, ref, check_audio, max_duration)), dataset_id


def reference_entries(entries: list[Entry]) -> list[Entry]:
    """Each distinct reference audio of `entries`, once."""
    seen: dict[str, Entry] = {}
    for e in entries:
        if e.ref_audio is not None:
            seen.setdefault(latent_name(e.ref_audio), e.ref_audio)
    return list(seen.values())


class ReferenceTTSDataset(TTSDataset):
    """TTSDataset that packs items with a `ref_audio` in the official reference layout (no
    continuation prompt for them: the reference is their prompt)."""

    def __init__(self, entries: list[Entry], store, tokenizer, patch_size: int, prompt_prob: float = 0.0,
                 seed: int = 0, phones=None):
        super().__init__(entries, store, tokenizer, patch_size, prompt_prob, seed, phones)
        self.prompts = [None if e.ref_audio is not None else p for e, p in zip(entries, self.prompts)]
        missing = [e.utt for e in entries if e.ref_audio is not None and latent_name(e.ref_audio) not in store]
        if missing:
            raise KeyError(f"{len(missing)} reference audios are not in the latent cache {store.folder} "
                           f"(first for: {missing[:3]}); rebuild it with `make cache`")

    def lengths(self) -> list[int]:
        out = super().lengths()
        for i, e in enumerate(self.entries):
            if e.ref_audio is not None:  # + 103, the reference patches, 104
                out[i] += 2 + math.ceil(self.store[latent_name(e.ref_audio)].shape[0] / self.patch)
        return out

    def __getitem__(self, key):
        i = key[0] if isinstance(key, tuple) else key
        e = self.entries[i]
        if e.ref_audio is None:
            return super().__getitem__(key)
        item = pack_with_reference(self.text_ids[i], self.store[latent_name(e)], self.store[latent_name(e.ref_audio)],
                                   patch_size=self.patch, audio_start_id=self.tok.audio_start_id,
                                   audio_end_id=self.tok.audio_end_id)
        item.update(utt=e.utt, text=e.text, speaker=e.speaker, lang=e.lang, prompt_utt=None)
        return item
