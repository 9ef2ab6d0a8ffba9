"""The backbone as plain PyTorch: FSQ, ablation switches, KV-cache decoding, packing."""
from __future__ import annotations

import pytest
import torch

from models.fsq import FSQ
from models.minicpm import MiniCPMConfig, MiniCPMModel
from models.packing import collate_packed, pack_utterance, to_patches
from models.voxcpm import VoxCPMBackbone, shift_right



@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread is fastest, and robust when the 2 cores are shared."""
    torch.set_num_threads(1)
D = 8
LM = dict(vocab_size=300, hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2,
          num_hidden_layers=2)
LOCAL = dict(hidden_dim=32, ffn_dim=64, num_heads=4, num_layers=1)
NO_RALM = dict(residual_lm_layers=0, fsq={"enabled": False})
# the switch combination of every row of docs/design.md section 6, at a tiny size
ABLATIONS = {
    "d256s9": {},
    "d4s9": dict(fsq={"latent_dim": 4}),
    "d1024s9": dict(fsq={"latent_dim": 64}),
    "nofsq_d1024": dict(fsq={"latent_dim": 64, "quantize": False}),
    "no_lm_init": dict(lm_init={"mode": "none"}),
    "no_ralm_tslm24_lminit": NO_RALM,
    "no_ralm_tslm30_random": dict(NO_RALM, lm={**LM, "num_hidden_layers": 3}),
    "no_ralm_tslm30_partial": dict(NO_RALM, lm={**LM, "num_hidden_layers": 3},
                                   lm_init={"mode": "partial", "path": "unused/here", "num_layers": 2}),
    "no_e1": dict(residual_input_e=False),
    "no_hres": dict(condition_on_residual=False),
}


def tiny(seed=0, **over) -> VoxCPMBackbone:
    torch.manual_seed(seed)
    kw = dict(lm=LM, encoder=LOCAL, dit=LOCAL, feat_dim=D, residual_lm_layers=2, fsq={"latent_dim": 8})
    kw.update(over)
    return VoxCPMBackbone(**kw)


def make_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return collate_packed([
        pack_utterance(torch.randint(128, 300, (6,), generator=g), torch.randn(9, D, generator=g)),
        pack_utterance(torch.randint(128, 300, (4,), generator=g), torch.randn(6, D, generator=g),
                       torch.randint(128, 300, (3,), generator=g), torch.randn(4, D, generator=g)),
    ])


# ---- FSQ -------------------------------------------------------------------------------------------
def test_fsq_values_lie_on_the_grid():
    torch.manual_seed(0)
    fsq = FSQ(16, 16, latent_dim=32, scale=9).eval()
    h = torch.randn(50, 16) * 3
    z = fsq.latent(h)
    expected = torch.round(torch.tanh(fsq.in_proj(h)) * 9) / 9
    assert torch.equal(z, expected)
    k = z * 9
    assert torch.allclose(k, k.round(), atol=1e-5) and k.abs().max() <= 9
    assert len(torch.unique(fsq.codes(h))) > 5 and fsq.codes(h).abs().max() <= 9
    fsq.train()  # same forward values in training
    assert torch.allclose(fsq.latent(h), expected, atol=1e-6)
    assert torch.allclose(fsq(h), fsq.out_proj(expected), atol=1e-6)


def test_fsq_straight_through_gradient():
    torch.manual_seed(0)
    fsq = FSQ(16, 16, latent_dim=32, scale=9)
    h = torch.randn(20, 16, requires_grad=True)
    w = torch.randn(20, 32)
    fsq.train()
    (ste,) = torch.autograd.grad((fsq.latent(h) * w).sum(), h)
    (smooth,) = torch.autograd.grad((torch.tanh(fsq.in_proj(h)) * w).sum(), h)  # rounding skipped
    assert torch.allclose(ste, smooth, atol=1e-6) and ste.abs().sum() > 0
    fsq.eval()  # without the estimator, rounding has no gradient
    (hard,) = torch.autograd.grad((fsq.latent(h) * w).sum(), h)
    assert hard.abs().max() == 0


def test_fsq_quantize_off_is_the_same_projection_unrounded():
    torch.manual_seed(0)
    fsq = FSQ(16, 16, latent_dim=32, scale=9, quantize=False)
    h = torch.randn(20, 16)
    z = fsq.latent(h)
    assert torch.equal(z, torch.tanh(fsq.in_proj(h)))
    assert not torch.allclose(z * 9, (z * 9).round(), atol=1e-3)


# ---- ablations -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(ABLATIONS))
def test_every_ablation_builds_and_trains(name):
    model = tiny(**ABLATIONS[name]).train()
    out = model(make_batch())
    assert set(out) == {"flow_loss", "stop_loss"}
    (out["flow_loss"] + out["stop_loss"]).backward()
    assert all(torch.isfinite(v) for v in out.values())
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert unused == []  # every parameter is trained (DDP without find_unused_parameters)
    names = {n.split(".")[0] for n, _ in model.named_parameters()}
    has_ralm = name not in ("no_ralm_tslm24_lminit", "no_ralm_tslm30_random", "no_ralm_tslm30_partial", "no_hres")
    assert ("residual_lm" in names) == has_ralm and ("res_to_dit_proj" in names) == has_ralm
    assert ("fsq_layer" in names) == (not name.startswith("no_ralm"))


def test_no_ralm_conditions_locdit_on_the_raw_tslm_hidden():
    model = tiny(**NO_RALM).eval()
    with torch.no_grad():
        states = model.hidden_states(make_batch())
    assert "ralm" not in states and torch.equal(states["bottleneck"], states["tslm"])


def _grad_through(model, method: str, arg: int, batch):
    """Full-loss gradient w.r.t. argument `arg` of `model.<method>`, replaced by a leaf tensor."""
    original = getattr(model, method)
    leaves = []

    def wrapped(*args):
        args = list(args)
        if args[arg] is None:  # the path does not exist: feed a stand-in the method may ignore
            args[arg] = torch.randn(*args[0].shape)
        args[arg] = args[arg].detach().requires_grad_()
        leaves.append(args[arg])
        return original(*args)

    setattr(model, method, wrapped)
    out = model(batch)
    (out["flow_loss"] + out["stop_loss"]).backward()
    assert leaves, f"{method} was not called"
    return [leaf.grad for leaf in leaves]


def test_no_e1_removes_the_residual_e_input():
    """The loss gradient w.r.t. the E fed to the RALM: non-zero by default, zero for no_e1."""
    (full,) = _grad_through(tiny().train(), "residual_inputs", 1, make_batch())
    assert full is not None and full.abs().sum() > 0
    (cut,) = _grad_through(tiny(residual_input_e=False).train(), "residual_inputs", 1, make_batch())
    assert cut is None or cut.abs().max() == 0


def test_no_hres_removes_the_ralm_hidden_from_the_condition():
    """The loss gradient w.r.t. the RALM hidden of the LocDiT condition: zero for no_hres."""
    (full,) = _grad_through(tiny().train(), "dit_condition", 1, make_batch())
    assert full is not None and full.abs().sum() > 0
    model = tiny(condition_on_residual=False).train()
    (cut,) = _grad_through(model, "dit_condition", 1, make_batch())
    assert cut is None or cut.abs().max() == 0
    assert model.residual_lm is None and model.res_to_dit_proj is None


def test_losses_are_masked_means_over_target_patches():
    """Padding and prompt positions do not count: a batch's losses are the patch-weighted means
    of its items' losses (with the same noise, times and dropout per patch)."""
    model = tiny().eval()
    batch = make_batch()
    sel = batch["loss_mask"]
    n = int(sel.sum())
    g = torch.Generator().manual_seed(5)
    t, noise, keep = torch.rand(n, generator=g), torch.randn(n, 2, D, generator=g), torch.rand(n, generator=g) > 0.3
    with torch.no_grad():
        joint = model(batch, t=t, noise=noise, cfg_keep=keep)
        counts = sel.sum(1).tolist()
        parts, start = [], 0
        for i, c in enumerate(counts):
            length = int(batch["lengths"][i])
            item = {k: v[i:i + 1, :length] for k, v in batch.items() if k != "lengths"}
            sl = slice(start, start + c)
            parts.append(model(item, t=t[sl], noise=noise[sl], cfg_keep=keep[sl]))
            start += c
    for key in ("flow_loss", "stop_loss"):
        expected = sum(p[key] * c for p, c in zip(parts, counts)) / n
        assert torch.allclose(joint[key], expected, atol=1e-5), key


def test_batch_errors_name_the_field():
    batch = make_batch()
    del batch["audio_mask"]
    with pytest.raises(KeyError, match="audio_mask"):
        tiny()(batch)
    with pytest.raises(ValueError, match=r"model\.fsq.*lat_dim"):
        tiny(fsq={"lat_dim": 3})
    with pytest.raises(ValueError, match=r"model\.lm.*n_layers"):
        tiny(lm={**LM, "n_layers": 3})


# ---- KV cache --------------------------------------------------------------------------------------
def stack(**over) -> MiniCPMModel:
    torch.manual_seed(0)
    rope = {"type": "longrope", "short_factor": [1.0, 1.5, 2.0, 3.0], "long_factor": [1.0, 2.0, 4.0, 8.0],
            "original_max_position_embeddings": 64}
    cfg = dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2,
               num_hidden_layers=3, rope_scaling=rope, max_position_embeddings=128, use_mup=True)
    return MiniCPMModel(MiniCPMConfig(**{**cfg, **over})).eval()


@pytest.mark.parametrize("over", [{}, {"rope_scaling": None, "use_mup": False}])
@torch.no_grad()
def test_incremental_decoding_equals_full_forward(over):
    lm = stack(**over)
    x = torch.randn(2, 12, 32)
    full = lm(x)
    cache = lm.new_cache(2, 16)
    prefix = lm(x[:, :7], cache=cache)
    steps = torch.stack([lm.forward_step(x[:, i], cache) for i in range(7, 12)], dim=1)
    assert cache.length == 12
    assert (torch.cat([prefix, steps], 1) - full).abs().max() < 1e-5


@torch.no_grad()
def test_left_padded_batch_decodes_like_each_item_alone():
    lm = stack()
    a, b = torch.randn(1, 9, 32), torch.randn(1, 6, 32)
    new = torch.randn(2, 3, 32)
    padded = torch.cat([a, torch.cat([torch.zeros(1, 3, 32), b], 1)])
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, :3] = False
    cache = lm.new_cache(2, 16)
    last = [lm(padded, attention_mask=mask, cache=cache)[:, -1]] + [lm.forward_step(new[:, i], cache) for i in range(3)]
    for row, item in enumerate((a, b)):
        alone = lm(torch.cat([item, new[row:row + 1]], 1))
        n = item.shape[1]
        expected = [alone[0, n - 1]] + [alone[0, n + i] for i in range(3)]
        for got, want in zip(last, expected):
            assert (got[row] - want).abs().max() < 1e-5


def test_rope_tables_stay_fp32_in_a_bf16_model():
    lm = stack()
    pos = torch.arange(4000, 4010)
    cos, sin = lm.rope(pos)
    lm = lm.to(torch.bfloat16)
    cos16, sin16 = lm.rope(pos)
    assert cos16.dtype == torch.float32 and torch.equal(cos16, cos) and torch.equal(sin16, sin)


@torch.no_grad()
def test_cache_select_and_overflow():
    lm = stack()
    x = torch.randn(3, 4, 32)
    cache = lm.new_cache(3, 5)
    lm(x, cache=cache)
    step = torch.randn(3, 32)
    cache.select(torch.tensor([2, 0]))  # drop item 1, reorder
    assert cache.batch_size == 2
    out = lm.forward_step(step[[2, 0]], cache)
    ref = lm(torch.cat([x, step[:, None]], 1))[:, -1]
    assert (out - ref[[2, 0]]).abs().max() < 1e-5
    with pytest.raises(RuntimeError, match="max_length"):
        lm.forward_step(step[[2, 0]], cache)


@pytest.mark.parametrize("name", ["d256s9", "no_ralm_tslm24_lminit", "no_e1", "no_hres", "audio_positions"])
@torch.no_grad()
def test_prefill_and_steps_match_teacher_forced_states(name):
    """Generation's incremental path gives the states the training forward conditions on (also with
    model.audio_positions, whose rotary positions the caches must carry on at r per patch)."""
    model = tiny(**(ABLATIONS[name] if name in ABLATIONS else {"audio_positions": 1.5})).eval()
    g = torch.Generator().manual_seed(3)
    item = pack_utterance(torch.randint(128, 300, (5,), generator=g), torch.randn(8, D, generator=g),
                          torch.randint(128, 300, (3,), generator=g), torch.randn(4, D, generator=g))
    batch = {k: v[None] for k, v in item.items()}
    states = model.hidden_states(batch)
    lm_ref = shift_right(states["bottleneck"])[0]
    res_ref = shift_right(states["ralm"])[0] if "ralm" in states else None
    first = int(batch["loss_mask"][0].nonzero()[0])  # the first target patch
    caches = model.new_caches(1, 32)
    pre = {k: v[:, :first] for k, v in batch.items()}
    got = [model.prefill(pre["text_tokens"], pre["text_mask"], pre["audio_feats"], pre["audio_mask"], caches)]
    last = int(batch["loss_mask"][0].nonzero()[-1])
    for pos in range(first, last):
        got.append(model.step(batch["audio_feats"][:, pos], caches))
    for offset, (lm_h, res_h) in enumerate(got):
        pos = first + offset
        assert (lm_h[0] - lm_ref[pos]).abs().max() < 1e-5
        if res_ref is None:
            assert res_h is None
        else:
            assert (res_h[0] - res_ref[pos]).abs().max() < 1e-5


# ---- packing ---------------------------------------------------------------------------------------
def test_pack_utterance_layout():
    lat, plat = torch.randn(5, D), torch.randn(3, D)
    item = pack_utterance([11, 12, 13], lat, [21, 22], plat)
    # [21 22 11 12 13 101 | prompt x2 | target x3 | 102]
    assert item["text_tokens"].tolist() == [21, 22, 11, 12, 13, 101, 0, 0, 0, 0, 0, 102]
    assert item["text_mask"].tolist() == [1] * 6 + [0] * 5 + [1]
    assert item["audio_mask"].tolist() == [0] * 6 + [1] * 5 + [0]
    assert item["loss_mask"].tolist() == [0] * 8 + [1] * 3 + [0]
    assert item["stop_labels"].tolist() == [0] * 10 + [1, 0]
    feats = item["audio_feats"]
    assert torch.equal(feats[6, 0], torch.zeros(D)) and torch.equal(feats[6, 1], plat[0])  # prompt: left pad
    assert torch.equal(feats[7].reshape(-1, D), plat[1:])
    assert torch.equal(feats[8:11].reshape(-1, D)[:5], lat) and torch.equal(feats[10, 1], torch.zeros(D))  # right pad
    zero_shot = pack_utterance([11], torch.randn(4, D))
    assert zero_shot["text_tokens"].tolist() == [11, 101, 0, 0, 102]
    assert zero_shot["loss_mask"].tolist() == [0, 0, 1, 1, 0] and zero_shot["stop_labels"].tolist() == [0, 0, 0, 1, 0]


def test_collate_pads_right_with_masks_off():
    items = [pack_utterance([1, 2], torch.randn(4, D)), pack_utterance([3], torch.randn(8, D), [4], torch.randn(2, D))]
    batch = collate_packed(items)
    assert batch["lengths"].tolist() == [6, 9]
    assert batch["audio_feats"].shape == (2, 9, 2, D)
    for key in ("text_mask", "audio_mask", "loss_mask"):
        assert batch[key].dtype == torch.bool and not batch[key][0, 6:].any()
    assert torch.equal(batch["audio_feats"][1], items[1]["audio_feats"])


def test_packing_errors():
    with pytest.raises(ValueError, match="prompt needs both"):
        pack_utterance([1], torch.randn(4, D), prompt_text_ids=[2])
    with pytest.raises(ValueError, match=r"\[frames, latent_dim\]"):
        pack_utterance([1], torch.randn(1, D, 4))
    with pytest.raises(ValueError, match="empty"):
        pack_utterance([1], torch.randn(0, D))
    assert to_patches(torch.randn(5, D), 2).shape == (3, 2, D)


# ---- the lead's experiment files, at tiny scale ----------------------------------------------------
def _experiments():
    try:
        from voxlab.config import EXPERIMENTS_DIR, available_experiments
        return sorted(n for n, p in available_experiments().items()  # experiments/tts/ and its v2/ family
                      if p.relative_to(EXPERIMENTS_DIR).parts[0] == "tts")
    except Exception:  # experiments not written yet
        return []


@pytest.mark.parametrize("name", _experiments() or ["(none)"])
def test_experiment_model_builds_and_trains_at_tiny_scale(name):
    if name == "(none)":
        pytest.skip("no experiments/tts files yet")
    from voxlab.config import compose, instantiate

    cfg = compose(name, "tiny").model
    model = instantiate(cfg).train()
    g = torch.Generator().manual_seed(0)
    d, vocab = cfg.feat_dim, cfg.lm.vocab_size
    batch = collate_packed([pack_utterance(torch.randint(128, vocab, (8,), generator=g), torch.randn(12, d, generator=g),
                                           torch.randint(128, vocab, (4,), generator=g), torch.randn(6, d, generator=g))])
    out = model(batch)
    (out["flow_loss"] + out["stop_loss"]).backward()
    assert all(torch.isfinite(v) for v in out.values())
    # "trains": the loss reaches every trainable parameter, and each part (LocEnc, TSLM, FSQ, RALM,
    # LocDiT, stop head...) gets a finite gradient that is not all zero. Fails on a detached hidden
    # state or a part left out of the loss (its parameters keep grad None, or all zeros).
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and [n for n, p in trainable.items() if p.grad is None] == []
    assert all(torch.isfinite(p.grad).all() for p in trainable.values())
    parts = {n.split(".")[0] for n in trainable}
    silent = [part for part in sorted(parts)
              if not any(p.grad.abs().sum() > 0 for n, p in trainable.items() if n.split(".")[0] == part)]
    assert silent == [], f"no gradient reaches {silent}"


def test_history_noise_touches_only_the_history_the_lms_read_in_training():
    """history_noise jitters the patches the LocEnc encodes (what the TSLM/RALM see), never the
    flow target or the LocDiT's previous patch, and only in training: eval losses are unchanged."""
    batch = make_batch()
    clean, noisy = tiny(seed=3), tiny(seed=3, history_noise=0.3)
    n = int(batch["loss_mask"].sum())
    fixed = dict(t=torch.full((n,), 0.5), noise=torch.zeros(n, 2, D), cfg_keep=torch.ones(n, dtype=torch.bool))
    for m in (clean, noisy):
        m.eval()
    with torch.no_grad():
        assert torch.equal(clean(batch, **fixed)["flow_loss"], noisy(batch, **fixed)["flow_loss"])
    seen = []
    noisy.feat_encoder.register_forward_hook(lambda mod, args, out: seen.append(args[0].detach().clone()))
    clean.train(), noisy.train()
    with torch.no_grad():
        a = clean(batch, **fixed, generator=torch.Generator().manual_seed(0))
        b = noisy(batch, **fixed, generator=torch.Generator().manual_seed(0))
    audio = batch["audio_feats"][batch["audio_mask"].bool()]
    assert (seen[0] - audio).abs().mean() > 0.1  # the LocEnc read jittered patches
    assert not torch.equal(a["flow_loss"], b["flow_loss"])


def train_tslm_on(model, batch, term: str, steps: int) -> float:
    """Adam on the TSLM's parameters alone against one loss term; the term after training."""
    opt = torch.optim.Adam(model.base_lm.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = model(batch)[term]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(model(batch)[term])


def test_alignment_loss_prefers_the_diagonal_and_trains_the_probed_heads():
    """model.align: the probed heads' attention from audio patches to the text costs least on the
    diagonal (patch j of T reading token n of N with n/N ~ j/T), anything off the text costs 1;
    its gradient reaches the TSLM's attention, so training on it alone lowers it. Off (heads 0),
    the forward returns no such term; in eval mode it is never computed."""
    batch = make_batch()
    assert "align_loss" not in tiny().train()(batch)
    model = tiny(align={"heads": 1, "sigma": 0.2}).train()
    assert "align_loss" not in model.eval()(batch)
    model.train()
    first = model(batch)["align_loss"]
    assert 0 < first.item() <= 1
    # an ideal diagonal reader and a reader of the audio only, set by hand in every layer
    audio, text = batch["audio_mask"].bool(), batch["text_mask"].bool() & (batch["text_tokens"] >= 128)
    ideal, wrong = torch.zeros_like(model.base_lm.layers[0].self_attn.probs), None
    for b in range(ideal.shape[0]):
        t_pos, a_pos = text[b].nonzero().flatten(), audio[b].nonzero().flatten()
        for j, q in enumerate(a_pos):
            ideal[b, :, q, t_pos[(j * len(t_pos)) // len(a_pos)]] = 1.0
    wrong = torch.zeros_like(ideal)
    wrong[..., :, :] = torch.eye(ideal.shape[-1])  # every position reads itself
    for probs, bound in ((ideal, 0.2), (wrong, None)):
        for layer in model.base_lm.layers:
            layer.self_attn.probs = probs
        cost = float(model.alignment_loss(batch))
        if bound is not None:
            assert cost < bound
        else:
            assert cost == pytest.approx(1.0)
    assert train_tslm_on(model, batch, "align_loss", 30) < 0.8 * float(first)
    with pytest.raises(ValueError, match="model.align"):
        tiny(align={"heads": 99})


def test_audio_positions_put_each_patch_beside_the_text_it_speaks():
    """model.audio_positions r: text token n at rotary position n, patch j at j * r, 102 one step
    after the last patch; left padding (generation batches) shifts nothing; null keeps the index."""
    batch = make_batch()
    text, audio = batch["text_mask"].bool(), batch["audio_mask"].bool()
    assert tiny().rotary_positions(text, audio) is None
    pos = tiny(audio_positions=1.5).rotary_positions(text, audio)
    for b in range(2):
        t_idx, a_idx = text[b].nonzero().flatten(), audio[b].nonzero().flatten()
        assert pos[b, t_idx[:-1]].tolist() == list(range(len(t_idx) - 1))  # the text and 101
        assert pos[b, a_idx].tolist() == [1.5 * j for j in range(len(a_idx))]
        assert pos[b, t_idx[-1]] == 1.5 * len(a_idx)  # 102
    padded = {k: torch.cat([torch.zeros_like(batch[k][:1, :3]), batch[k][:1]], 1) for k in ("text_mask", "audio_mask")}
    real = torch.ones_like(padded["text_mask"], dtype=torch.bool)
    real[:, :3] = False
    left = tiny(audio_positions=1.5).rotary_positions(padded["text_mask"].bool(), padded["audio_mask"].bool(), real)
    assert torch.equal(left[0, 3:], pos[0]) and torch.equal(left[0, :3], torch.zeros(3))
    with pytest.raises(ValueError, match="audio_positions"):
        tiny(audio_positions=0)


def test_phone_loss_names_each_target_patch_phone_from_its_condition():
    """model.phones: with labels on the target patches (-100 elsewhere) the forward adds a cross
    entropy of `phone_head` over the LocDiT condition; unlabelled patches do not count; training on it
    alone lowers it through the TSLM (the condition is made before the patch is seen). Off (classes 0)
    or without labels, there is no such term and no head; the official format refuses the head."""
    from models.official import to_official_config

    batch = make_batch()
    assert tiny().phone_head is None and "phone_loss" not in tiny().train()(batch)
    model = tiny(phones={"classes": 5}).train()
    assert "phone_loss" not in model(batch)  # a batch without labels (validation, other data)
    target = batch["loss_mask"].bool()
    labels = torch.full(target.shape, -100)
    labels[target] = torch.arange(int(target.sum())) % 5
    batch["phone_labels"] = labels
    first = model(batch)["phone_loss"]
    assert first.item() == pytest.approx(torch.log(torch.tensor(5.0)).item(), rel=0.3)
    only_one = labels.clone()
    only_one[target.nonzero()[1:].unbind(1)] = -100  # all but the first labelled patch ignored
    one = model({**batch, "phone_labels": only_one})["phone_loss"]
    assert not torch.isclose(one, first)
    assert train_tslm_on(model, batch, "phone_loss", 40) < 0.7 * float(first)  # the head stays as it is
    with pytest.raises(ValueError, match="model.phones"):
        tiny(phones={"classes": -1})
    with pytest.raises(ValueError, match="phones.classes"):
        to_official_config({**model.config, "phones": {"classes": 5}})


def test_flow_repeats_average_the_loss_over_draws_for_one_condition():
    """`flow.repeats` k: the flow loss is the mean over k draws (t, noise, dropout) per target patch,
    each on the same condition and previous patch; the LMs run once."""
    one, three = tiny(flow={"repeats": 1}), tiny(flow={"repeats": 3})
    three.load_state_dict(one.state_dict())
    fm = three.feat_decoder
    g = torch.Generator().manual_seed(3)
    x1, mu, cond = torch.randn(5, 2, D, generator=g), torch.randn(5, 32, generator=g), torch.randn(5, 2, D, generator=g)
    got = fm.loss(x1, mu, cond, generator=torch.Generator().manual_seed(9))
    # the same draws, made by hand: k stacked copies through the repeats=1 loss
    expected = one.feat_decoder.loss(x1.repeat(3, 1, 1), mu.repeat(3, 1), cond.repeat(3, 1, 1),
                                     generator=torch.Generator().manual_seed(9))
    assert torch.allclose(got, expected) and not torch.allclose(got, one.feat_decoder.loss(
        x1, mu, cond, generator=torch.Generator().manual_seed(9)))
    calls = []
    three.base_lm.register_forward_hook(lambda *_: calls.append(1))
    three(make_batch())["flow_loss"].backward()
    assert len(calls) == 1 and three.lm_to_dit_proj.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="repeats must be at least 1"):
        tiny(flow={"repeats": 0})
