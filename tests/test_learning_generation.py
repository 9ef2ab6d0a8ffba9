"""Learning in generation mode: the tiny backbone, trained on a handful of real utterances (the
embedded corpus through the tiny VAE the repository ships), generates them back free-running,
each patch from its own previous output (no teacher forcing), zero-shot and with a voice prompt.
It must stop near the true length and its latents must lie near the ground truth's after DTW
alignment, much nearer than another utterance's latents do. Falling teacher-forced losses alone
do not show this: a mismatch between what training shows the model and what generation feeds it
passes them and fails here."""
from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import pytest
import torch

from models import load_audiovae
from models.packing import collate_packed, pack_utterance
from models.tts import TTSModel
from models.voxcpm import VoxCPMBackbone
from voxlab.audio import load_audio
from voxlab.text import CharTokenizer

# The slowest setup of the suite (about 2 minutes on the slower 2-core machine): `make test-slow` runs it,
# so that `make test` stays under 10 minutes there.
pytestmark = pytest.mark.slow

SHIPPED_VAE = Path(__file__).resolve().parents[1] / "assets" / "tiny_audiovae"
SIZES = dict(lm=dict(vocab_size=0, hidden_size=96, intermediate_size=192, num_attention_heads=4,
                     num_key_value_heads=2, num_hidden_layers=2, max_position_embeddings=512),
             encoder=dict(hidden_dim=96, ffn_dim=192, num_heads=4, num_layers=1),
             dit=dict(hidden_dim=96, ffn_dim=192, num_heads=4, num_layers=2),
             residual_lm_layers=1, fsq=dict(latent_dim=64, scale=9), lm_init=dict(mode="none"), max_length=512)


def latent_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean squared distance per element between two latent sequences [T, D] along the DTW path."""
    x, y = a.double().numpy(), b.double().numpy()
    _, path = librosa.sequence.dtw(X=x.T, Y=y.T, metric="sqeuclidean")
    return float(np.mean(np.sum((x[path[:, 0]] - y[path[:, 1]]) ** 2, axis=1)) / x.shape[1])


@pytest.fixture(scope="module")
def overfit(tts_assets):
    """A tiny backbone trained on 3 English utterances, each zero-shot and continued from another
    of the three as its prompt; returns (model, utterances)."""
    torch.set_num_threads(2)
    _, corpus, _ = tts_assets
    import json

    entries = [json.loads(line) for line in (corpus / "train.jsonl").read_text().splitlines()]
    utts = [e for e in entries if e["lang"] == "en"][:3]
    assert len(utts) == 3, "the test corpus needs 3 English utterances"
    vae = load_audiovae(SHIPPED_VAE)
    tokenizer = CharTokenizer.build([u["text"] for u in entries])
    torch.manual_seed(0)
    sizes = {**SIZES, "lm": {**SIZES["lm"], "vocab_size": tokenizer.vocab_size}}
    model = TTSModel(VoxCPMBackbone(**sizes, feat_dim=vae.latent_dim), vae, tokenizer)
    for u in utts:
        u["wav"] = str(corpus / u["audio"])
        with torch.no_grad():
            u["latents"] = vae.encode(torch.as_tensor(load_audio(u["wav"], 16000)).view(1, 1, -1))[0].t()
            u["prompt_patches"] = model.prompt_patches(u["wav"])  # as generation encodes a prompt
        u["ids"] = tokenizer.encode(u["text"])
    items = [pack_utterance(u["ids"], u["latents"]) for u in utts]
    items += [pack_utterance(u["ids"], u["latents"], utts[i - 1]["ids"], utts[i - 1]["prompt_patches"].reshape(-1, 64))
              for i, u in enumerate(utts)]
    batch = collate_packed(items)
    bb = model.backbone.train()
    opt = torch.optim.AdamW(bb.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(1000):  # ~100 s on 2 cores; generation matches from ~600 steps on
        losses = bb(batch, generator=g)
        opt.zero_grad()
        (losses["flow_loss"] + losses["stop_loss"]).backward()
        opt.step()
    return model.eval(), utts


def _check(model, utts, prompts: bool):
    texts = [u["text"] for u in utts]
    kw = {}
    if prompts:
        kw = dict(prompt_wavs=[utts[i - 1]["wav"] for i in range(3)], prompt_texts=[utts[i - 1]["text"] for i in range(3)])
    out = model.synthesize_batch(texts, temperature=0.0, seed=0, **kw)
    for i, (u, s) in enumerate(zip(utts, out)):
        truth = u["latents"]
        generated = s.patches.reshape(-1, truth.shape[-1])
        other = utts[(i + 1) % 3]["latents"]  # the distance that says "not this utterance"
        assert s.stopped, f"{u['utt']}: never stopped ({len(s.patches)} patches)"
        assert abs(len(generated) - len(truth)) <= max(4, 0.15 * len(truth)), (len(generated), len(truth))
        d, baseline = latent_distance(generated, truth), latent_distance(other, truth)
        assert d < 0.5 * baseline, (u["utt"], d, baseline)


def test_generates_its_training_utterances_back_zero_shot(overfit):
    _check(*overfit, prompts=False)


def test_generates_its_training_utterances_back_with_a_voice_prompt(overfit):
    _check(*overfit, prompts=True)


def test_text_reliance_sees_that_the_trained_model_reads_its_text(overfit):
    """eval.analysis.text_reliance: the model that speaks its 3 utterances back predicts their patches
    far better from their own texts than from each other's; the same network untrained does not."""
    from eval.analysis.text_reliance import text_reliance

    model, utts = overfit
    pairs = [(u["ids"], u["latents"]) for u in utts]
    trained = text_reliance(model.backbone, pairs, times=(0.95,), seeds=2)[0]
    torch.manual_seed(0)
    fresh = VoxCPMBackbone(**{**SIZES, "lm": {**SIZES["lm"], "vocab_size": model.tokenizer.vocab_size}},
                           feat_dim=model.vae.latent_dim)
    untrained = text_reliance(fresh, pairs, times=(0.95,), seeds=2)[0]
    assert trained["text_gap"] > 0.1 * trained["right_text"], trained
    assert abs(untrained["text_gap"]) < 0.2 * trained["text_gap"], (untrained, trained)
    assert trained["no_condition"] > trained["right_text"]
