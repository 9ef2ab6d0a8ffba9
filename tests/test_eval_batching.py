"""Batched evaluation synthesis: batches chosen by a memory budget (eval.generate.plan_batches with
TTSModel.item_memory, decode_memory), and the wavs a batch makes equal the ones made one utterance at a time."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from eval.generate import generate_items, plan_batches
from eval.testset import TestItem
from test_inference import TEXTS, _one_thread, model  # noqa: F401  (fixtures)

GB = 2**30


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    root = tmp_path_factory.mktemp("items")
    out = []
    for i, text in enumerate(TEXTS + ["hello there", "a much longer text for the last one"]):
        wav = root / f"p{i}.wav"
        sf.write(wav, (np.random.default_rng(i).standard_normal(160 * (i + 1)) * 0.1).astype(np.float32), 16000)
        out.append(TestItem(f"u{i}", "we test", Path(wav), text))
    return out


def test_item_memory_grows_with_text_and_prompt(model):
    short, longer = model.item_memory("a b"), model.item_memory("a b c d e f g h")
    assert 0 < short < longer
    assert model.item_memory("a b", "we test", 2.0) > model.item_memory("a b", "we test", 0.1)
    assert model.item_memory("a b c d e f g h", max_len=3) < longer  # the length cap bounds it
    assert 0 < model.decode_memory("a b") < model.decode_memory("a b c d e f g h")
    assert model.decode_memory("a b c d e f g h", max_len=3) < model.decode_memory("a b c d e f g h")


def test_batches_fit_the_memory_budget(model, items):
    args = {it.utt: (it.target_text, it.prompt_text, sf.info(str(it.prompt_wav)).duration) for it in items}
    need = {u: model.item_memory(*a) for u, a in args.items()}
    decode = {u: model.decode_memory(*a) for u, a in args.items()}
    budget_gb = (2.5 * max(need.values()) + max(decode.values())) / GB  # room for two of the largest
    batches = plan_batches(model, items, batch_size=0, memory_gb=budget_gb)
    assert sorted(it.utt for b in batches for it in b) == sorted(need)
    assert all(len(b) * max(need[it.utt] for it in b) + max(decode[it.utt] for it in b) <= budget_gb * GB
               for b in batches)
    assert max(len(b) for b in batches) >= 2 and len(batches) < len(items)
    flat = [it for b in batches for it in b]
    assert [len(it.target_text) for it in flat] == sorted(len(it.target_text) for it in items)
    assert [len(b) for b in plan_batches(model, items, batch_size=4)] == [4, 2]
    assert all(len(b) == 1 for b in plan_batches(model, items, batch_size=0, memory_gb=1e-9))  # never empty


def test_batched_wavs_equal_one_by_one(model, items):
    settings = {"cfg": 2.0, "timesteps": 3, "temperature": 1.0, "seed": 3, "max_len": 5}
    batched = generate_items(model, items, settings, batch_size=0, memory_gb=2.0)
    single = generate_items(model, items, settings, batch_size=1)
    assert batched.keys() == single.keys()
    for utt, (wav, sr, outcome) in single.items():
        other, other_sr, other_outcome = batched[utt]
        assert outcome == other_outcome and outcome["stopped_by"] in ("stop_head", "length_cap")
        assert sr == other_sr and wav.shape == other.shape
        assert np.abs(wav - other).max() <= 1e-4, utt


def test_the_length_cap_is_recorded_as_the_end_of_each_utterance(model, items):
    # the stop head is obeyed from the 4th patch on: a cap of 3 patches always ends the generation
    made = generate_items(model, items[:3], {"timesteps": 2, "seed": 0, "max_len": 3}, batch_size=0)
    assert [g.outcome for g in made.values()] == [{"stopped_by": "length_cap", "patches": 3}] * 3
