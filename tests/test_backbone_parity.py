"""Our backbone against the official `voxcpm` package (2.0.3): weights, module outputs, training
losses, incremental decoding, config conversion and the 0.5B parameter count."""
from __future__ import annotations

import json

import pytest
import torch

from models.official import from_official_config, to_official_config
from models.packing import collate_packed, pack_utterance
from models.voxcpm import VoxCPMBackbone, count_parameters, shift_right
from models.official_reference import backbone_state_dict, build_official, import_official, official_0_5b_config, small_official_config
from voxlab.config import instantiate



@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread is fastest, and robust when the 2 cores are shared."""
    torch.set_num_threads(1)
TOL = 1e-5


def close(a, b, tol=TOL):
    assert a.shape == b.shape, (a.shape, b.shape)
    err = (a - b).abs().max().item()
    assert err <= tol, f"max abs diff {err:.3g} > {tol}"


@pytest.fixture(scope="module")
def pair():
    cfg = small_official_config()
    off = build_official(cfg, seed=0)
    ours = instantiate(from_official_config(cfg))
    ours.load_state_dict(backbone_state_dict(off), strict=True)
    return off, ours.eval(), cfg


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(1)
    d = 8
    items = [pack_utterance(torch.randint(128, 256, (7,), generator=g), torch.randn(11, d, generator=g)),
             pack_utterance(torch.randint(128, 256, (5,), generator=g), torch.randn(6, d, generator=g),
                            torch.randint(128, 256, (4,), generator=g), torch.randn(5, d, generator=g))]
    return collate_packed(items)


def official_inputs(b):
    return dict(text_tokens=b["text_tokens"], text_mask=b["text_mask"].int(), audio_feats=b["audio_feats"],
                audio_mask=b["audio_mask"].int(), loss_mask=b["loss_mask"].int(),
                position_ids=torch.zeros_like(b["text_tokens"]), labels=b["stop_labels"])


def official_states(off, b):
    """The official forward's intermediate tensors, computed with its own submodules."""
    tm, am = b["text_mask"].float().unsqueeze(-1), b["audio_mask"].float().unsqueeze(-1)
    feat = off.enc_to_lm_proj(off.feat_encoder(b["audio_feats"]))
    scale = off.config.lm_config.scale_emb if off.config.lm_config.use_mup else 1.0
    combined = tm * off.base_lm.embed_tokens(b["text_tokens"]) * scale + am * feat
    h, _ = off.base_lm(inputs_embeds=combined, is_causal=True)
    hb = off.fsq_layer(h) * am + h * tm
    r, _ = off.residual_lm(inputs_embeds=hb + am * feat, is_causal=True)
    return dict(feat=feat, combined=combined, tslm=h, bottleneck=hb, ralm=r)


def test_state_dict_is_the_official_one(pair):
    off, ours, _ = pair
    theirs = backbone_state_dict(off)
    assert set(ours.state_dict()) == set(theirs)
    assert all(ours.state_dict()[k].shape == v.shape for k, v in theirs.items())
    vae = {k: v for k, v in off.state_dict().items() if k.startswith("audio_vae.")}
    off.load_state_dict({**ours.state_dict(), **vae}, strict=True)  # and back


@torch.no_grad()
def test_module_outputs_match(pair, batch):
    off, ours, _ = pair
    ref = official_states(off, batch)
    mine = ours.hidden_states(batch)
    am, tm = batch["audio_mask"], batch["text_mask"]
    close(mine["feat_embed"][am], ref["feat"][am])                       # LocEnc patch embeddings
    close(ours.input_embeds(batch["text_tokens"], tm, mine["feat_embed"], am), ref["combined"])
    close(mine["tslm"][am | tm], ref["tslm"][am | tm])                      # TSLM hidden states
    close(mine["bottleneck"][am | tm], ref["bottleneck"][am | tm])          # FSQ at audio positions
    close(mine["ralm"][am | tm], ref["ralm"][am | tm])                      # RALM hidden states
    lm_h, res_h = shift_right(ref["bottleneck"]), shift_right(ref["ralm"])
    close(ours.stop_logits(lm_h), off.stop_head(off.stop_actn(off.stop_proj(lm_h))))
    close(ours.dit_condition(lm_h, res_h), off.lm_to_dit_proj(lm_h) + off.res_to_dit_proj(res_h))


@torch.no_grad()
def test_locdit_estimator_matches(pair):
    off, ours, cfg = pair
    g = torch.Generator().manual_seed(2)
    n, p, d, hd = 6, cfg["patch_size"], cfg["feat_dim"], cfg["dit_config"]["hidden_dim"]
    x, cond = torch.randn(n, p, d, generator=g), torch.randn(n, p, d, generator=g)
    mu, t = torch.randn(n, hd, generator=g), torch.rand(n, generator=g)
    ref = off.feat_decoder.estimator(x.transpose(1, 2), mu, t, cond.transpose(1, 2), torch.zeros(n))
    close(ours.feat_decoder.estimator(x, mu, t, cond), ref.transpose(1, 2))


def test_training_losses_match_official(pair, batch):
    """Same random draws -> the same flow-matching and stop losses as the official forward."""
    off, ours, _ = pair
    off.train(), ours.train()
    try:
        torch.manual_seed(3)
        ref = off(**official_inputs(batch))
        # replay the official compute_loss draws (voxcpm 2.0.3 order) over all B*S positions
        torch.manual_seed(3)
        b, s, p, d = batch["audio_feats"].shape
        keep = torch.rand(b * s) > off.feat_decoder.training_cfg_rate
        torch.rand(b * s)                     # noisy-condition mask (probability 0)
        torch.randn(b * s, d, p)              # noisy-condition noise (scale 0)
        torch.randn(b * s)                    # r
        t = torch.sigmoid(torch.randn(b * s) - 0.4)
        torch.rand(b * s)                     # r != t mask (ratio 0)
        z = torch.randn(b * s, d, p).transpose(1, 2)
        sel = batch["loss_mask"].reshape(-1)
        mine = ours(batch, t=t[sel], noise=z[sel], cfg_keep=keep[sel])
    finally:
        off.eval(), ours.eval()
    close(mine["flow_loss"], ref["loss/diff"])
    close(mine["stop_loss"], ref["loss/stop"])


def _official_decode(off, text, text_mask, feat, feat_mask, patches):
    """The official _inference prefill + steps, without the LocDiT sampling (patches are given)."""
    off.base_lm.setup_cache(1, 64, "cpu", torch.float32)
    off.residual_lm.setup_cache(1, 64, "cpu", torch.float32)
    feat_embed = off.enc_to_lm_proj(off.feat_encoder(feat))
    scale = off.config.lm_config.scale_emb if off.config.lm_config.use_mup else 1.0
    tm, fm = text_mask.unsqueeze(-1).float(), feat_mask.unsqueeze(-1).float()
    h, kv = off.base_lm(inputs_embeds=tm * off.base_lm.embed_tokens(text) * scale + fm * feat_embed, is_causal=True)
    off.base_lm.kv_cache.fill_caches(kv)
    h = off.fsq_layer(h) * fm + h * tm
    r, rkv = off.residual_lm(inputs_embeds=h + fm * feat_embed, is_causal=True)
    off.residual_lm.kv_cache.fill_caches(rkv)
    out = [(h[:, -1], r[:, -1])]
    for patch in patches:
        e = off.enc_to_lm_proj(off.feat_encoder(patch[:, None]))[:, 0]
        lm_h = off.fsq_layer(off.base_lm.forward_step(e, torch.tensor([off.base_lm.kv_cache.step()])))
        res_h = off.residual_lm.forward_step(lm_h + e, torch.tensor([off.residual_lm.kv_cache.step()]))
        out.append((lm_h, res_h))
    return out


@pytest.mark.parametrize("prompt", [False, True])
@torch.no_grad()
def test_incremental_decoding_matches_official(pair, prompt):
    off, ours, cfg = pair
    g = torch.Generator().manual_seed(4)
    p, d = cfg["patch_size"], cfg["feat_dim"]
    n_text, n_prompt = 6, (3 if prompt else 0)
    s = n_text + n_prompt
    text = torch.zeros(1, s, dtype=torch.long)
    text[0, :n_text] = torch.cat([torch.randint(128, 256, (n_text - 1,), generator=g), torch.tensor([101])])
    feat = torch.zeros(1, s, p, d)
    feat[0, n_text:] = torch.randn(n_prompt, p, d, generator=g)
    text_mask = torch.arange(s)[None] < n_text
    patches = [torch.randn(1, p, d, generator=g) for _ in range(3)]
    ref = _official_decode(off, text, text_mask.int(), feat, (~text_mask).int(), patches)
    caches = ours.new_caches(1, 64)
    mine = [ours.prefill(text, text_mask, feat, ~text_mask, caches)] + [ours.step(x, caches) for x in patches]
    for (lm_a, res_a), (lm_b, res_b) in zip(mine, ref):
        close(lm_a, lm_b)
        close(res_a, res_b)
        close(ours.stop_logits(lm_a), off.stop_head(off.stop_actn(off.stop_proj(lm_b))))


def _normalised(cfg: dict) -> dict:
    off = import_official()
    return off.VoxCPMConfig.model_validate(cfg).model_dump()


def test_official_config_round_trip():
    cfg = small_official_config()
    ours = from_official_config(cfg)
    assert ours["lm"]["num_hidden_layers"] == 2 and ours["residual_lm_layers"] == 2
    assert ours["fsq"] == {"enabled": True, "latent_dim": 16, "scale": 9, "quantize": True}
    assert ours["encoder"]["kv_channels"] == 8 and ours["dit"]["hidden_dim"] == 16
    back = to_official_config(json.loads(json.dumps(ours)))  # survives JSON / YAML
    assert back["architecture"] == "voxcpm" and back["lm_config"]["bos_token_id"] == 1
    assert _normalised(back) == _normalised(cfg)
    # our config -> official -> ours keeps everything the network uses
    model = VoxCPMBackbone(lm=dict(vocab_size=300, hidden_size=32, intermediate_size=64, num_attention_heads=4,
                                   num_key_value_heads=2, num_hidden_layers=3),
                           encoder=dict(hidden_dim=32, ffn_dim=64, num_heads=4, num_layers=1),
                           dit=dict(hidden_dim=32, ffn_dim=64, num_heads=4, num_layers=1),
                           feat_dim=8, residual_lm_layers=2, fsq=dict(latent_dim=12, scale=5))
    official = to_official_config(model.config, dtype="float32")
    assert official["dtype"] == "float32" and official["lm_config"]["rope_scaling"]["type"] == "longrope"
    again = instantiate(from_official_config(official))
    skip = ("lm_init", "official")
    assert {k: v for k, v in again.config.items() if k not in skip} == {k: v for k, v in model.config.items() if k not in skip}
    again.load_state_dict(model.state_dict(), strict=True)


@pytest.mark.parametrize("change,key", [({"fsq": {"enabled": False}}, "model.fsq.enabled"),
                                        ({"fsq": {"quantize": False}}, "model.fsq.quantize"),
                                        ({"residual_lm_layers": 0}, "model.residual_lm_layers"),
                                        ({"residual_input_e": False}, "model.residual_input_e"),
                                        ({"condition_on_residual": False}, "model.condition_on_residual")])
def test_ablations_are_not_official(change, key):
    model = from_official_config(small_official_config())
    model.update(change)
    with pytest.raises(ValueError, match=key):
        to_official_config(model)


def test_plain_rope_as_longrope_is_exact():
    """Plain RoPE is exported as LongRoPE with unit factors: the same network function."""
    lm = dict(vocab_size=300, hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2,
              num_hidden_layers=2, max_position_embeddings=512)
    local = dict(hidden_dim=32, ffn_dim=64, num_heads=4, num_layers=1)
    torch.manual_seed(0)
    plain = VoxCPMBackbone(lm=lm, encoder=local, dit=local, feat_dim=8, residual_lm_layers=1).eval()
    official = to_official_config(plain.config)
    longrope = {**from_official_config(official)["lm"], "rope_scaling": official["lm_config"]["rope_scaling"]}
    other = VoxCPMBackbone(lm=longrope, encoder=local, dit=local, feat_dim=8, residual_lm_layers=1).eval()
    other.load_state_dict(plain.state_dict())
    x = torch.randn(2, 40, 32)
    with torch.no_grad():
        assert torch.equal(plain.base_lm(x), other.base_lm(x))


def test_parameter_count_equals_official_0_5b():
    """Paper-scale d256s9 == the official 0.5B model (built on the meta device: no memory, fast)."""
    cfg = official_0_5b_config()
    with torch.device("meta"):
        off = build_official(cfg, vae_config={})  # default (real-size) AudioVAE config
        ours = instantiate(from_official_config(cfg))
    theirs = {k: v.shape for k, v in off.named_parameters() if not k.startswith("audio_vae.")}
    mine = {k: v.shape for k, v in ours.named_parameters()}
    assert mine == theirs
    assert len(mine) == 377
    n = count_parameters(ours)
    assert n == sum(v.numel() for k, v in off.named_parameters() if not k.startswith("audio_vae."))
    assert 0.5e9 < n < 0.75e9, n
    pytest.paper_scale_param_count = n


def test_paper_d256s9_experiment_matches_official_0_5b():
    """The d256s9 experiment at paper scale builds the official 0.5B architecture."""
    from voxlab.config import available_experiments, compose

    if "d256s9" not in available_experiments():
        pytest.skip("experiments/tts/d256s9.yaml not written yet")
    model_cfg = compose("d256s9", "paper").model
    with torch.device("meta"):
        ours = instantiate(model_cfg)
        ref = instantiate(from_official_config(official_0_5b_config()))
    assert {k: v.shape for k, v in ours.named_parameters()} == {k: v.shape for k, v in ref.named_parameters()}
