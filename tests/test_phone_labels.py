"""Phone labels for the phone loss (`model.phones`): the embedded corpus's espeak-ng phone timings,
kept in `<corpus>/phones.jsonl`, and their per-patch ids in a training batch."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from datamodules.corpus.phones import PHONES_FILE, SILENCE, PhoneLabels, corpus_phones, phone_segments
from datamodules.tts import collate_tts
from models.packing import NO_LABEL as IGNORE


def entry(utt, text, speaker="en_v1", lang="en"):
    return SimpleNamespace(utt=utt, text=text, speaker=speaker, lang=lang)


def test_corpus_phones_are_espeaks_own_kept_beside_the_corpus_and_made_again_when_stale(tmp_path):
    a, b = entry("a", "The cat sat on a mat."), entry("b", "Ni hao.", "zh_v0", "zh")
    table = corpus_phones(tmp_path, [a, b], workers=1, progress=False)
    want = phone_segments(a.text, "en", "en_v1")
    assert [t for x in table["a"] for t in x[:2]] == pytest.approx([t for s, e, _ in want for t in (s, e)], abs=1e-4)
    assert [x[2] for x in table["a"]] == [n for _, _, n in want]
    rows = [json.loads(line) for line in (tmp_path / PHONES_FILE).read_text().splitlines()]
    assert {r["utt"] for r in rows} == {"a", "b"}
    # another sentence under the same name is not served the old timings
    again = corpus_phones(tmp_path, [entry("a", "Hello there.")], workers=1, progress=False)
    assert [x[2] for x in again["a"]] == [n for _, _, n in phone_segments("Hello there.", "en", "en_v1")]
    with pytest.raises(KeyError, match="embedded corpus"):
        corpus_phones(tmp_path, [entry("c", "Hi.", speaker="someone")], workers=1, progress=False)


def test_patch_labels_name_the_phone_at_each_patch_centre_and_batches_pad_with_ignore():
    table = {"u": [[0.0, 0.1, "sil"], [0.1, 0.25, "k"], [0.25, 0.4, "a"]]}
    labels = PhoneLabels(table, 0.08)
    assert labels.names == sorted({"sil", "k", "a", SILENCE})
    ids = labels("u", 6)  # centres 0.04, 0.12, 0.20, 0.28, 0.36, 0.44
    assert [labels.names[i] for i in ids] == ["sil", "k", "k", "a", "a", SILENCE]
    short = {"loss_mask": torch.tensor([False, True, True]), "phone_labels": torch.tensor([IGNORE, 1, 2])}
    items = []
    for n, extra in ((3, short), (5, None)):
        it = {"text_tokens": torch.zeros(n, dtype=torch.long), "text_mask": torch.zeros(n, dtype=torch.bool),
              "audio_feats": torch.zeros(n, 2, 4), "audio_mask": torch.zeros(n, dtype=torch.bool),
              "loss_mask": torch.zeros(n, dtype=torch.bool), "stop_labels": torch.zeros(n, dtype=torch.long),
              "utt": "x", "text": "", "speaker": "", "lang": "en", "prompt_utt": None}
        if extra:
            it.update(extra)
        items.append(it)
    batch = collate_tts(items)
    assert batch["phone_labels"].tolist() == [[IGNORE, 1, 2, IGNORE, IGNORE], [IGNORE] * 5]
