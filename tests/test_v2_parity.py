"""VoxCPM2 backbone against the official `voxcpm` package (2.0.3, `VoxCPM2Model`): small random
official models of two sizes (patch 2 with RoPE in the RALM, patch 4 without) saved in the release
layout, loaded with `models.load_backbone`; the same weights give the same teacher-forced states,
LocDiT velocity and training losses, and the same generated latent patches in the four official
modes (zero-shot, continuation of a prompt, isolated reference [103 .. 104], reference + continuation),
at temperature 0 and seeded at temperature 1, with the prompt given as latents on both sides.
`models.load` on the folder builds the AudioVAE V2 too (models.audiovae_v2): the decoded waveform
at the official output rate, context patches cut, matches the official one in every mode."""
from __future__ import annotations

import contextlib
import functools
import json

import pytest
import torch

import models
from models.audiovae import AudioVAE
from models.audiovae_v2 import AudioVAEV2
from models.official import from_official_config, to_official_config
from models.official_reference import (SMALL_VAE, backbone_state_dict, build_official_v2, import_official_v2,
                                       install_stubs, small_official_v2_config, tiny_tokenizer, write_official_folder)
from models.packing import collate_packed, pack_utterance
from models.tts import PromptLatents, TTSModel
from models.voxcpm import shift_right
from test_inference import tune_stop
from voxlab.text import HFTokenizer

install_stubs()  # torchaudio stand-in before the package is imported
pytest.importorskip("voxcpm")
TOL = 1e-5       # module outputs
GEN_TOL = 1e-4   # generated latents
# two sizes the v1 tests do not use; head dim 8 everywhere (LongRoPE factors are per head dim)
SIZES = {
    "p2_rope": dict(patch_size=2, residual_lm_no_rope=False),
    "p4_norope": dict(patch_size=4, residual_lm_no_rope=True, feat_dim=6, residual_lm_num_layers=3,
                      scalar_quantization_latent_dim=12,
                      lm_config={"hidden_size": 48, "intermediate_size": 96, "num_attention_heads": 6,
                                 "num_hidden_layers": 3},
                      encoder_config={"hidden_dim": 32, "ffn_dim": 64, "num_heads": 4, "num_layers": 1},
                      dit_config={"hidden_dim": 32, "ffn_dim": 48, "num_heads": 4, "num_layers": 2}),
}
# the stop head tuned (test_inference.tune_stop: bias, direction seed) so that runs end at different
# steps: p2 at the cap but one (54 patches), p4 after 4, 8, 23 and 13 patches
STOP = {"p2_rope": (-0.3, 6), "p4_norope": (0.1, 7)}
TEXT, PROMPT_TEXT, MAX_LEN = "hello world, this is a test", "we test", 60


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def close(a, b, what="", tol=TOL):
    assert a.shape == b.shape, (what, a.shape, b.shape)
    err = (a - b).abs().max().item()
    assert err <= tol, f"{what}: max abs diff {err:.3g} > {tol}"


@pytest.fixture(scope="module", params=list(SIZES))
def pair(request, tmp_path_factory):
    """(official VoxCPM2Model, our TTSModel on its folder's backbone, config, folder)."""
    cfg = small_official_v2_config(**SIZES[request.param])
    off = build_official_v2(cfg, seed=0, tokenizer=tiny_tokenizer())
    with torch.no_grad():
        tune_stop(off, *STOP[request.param])
    folder = write_official_folder(off, tmp_path_factory.mktemp(request.param) / "official")
    if request.param == "p4_norope":  # the other weight file name the official loader reads
        state = {k: v.clone() for k, v in backbone_state_dict(off).items()}
        (folder / "model.safetensors").unlink()
        torch.save(state, folder / "pytorch_model.bin")
    backbone = models.load_backbone(folder)
    # a stand-in VAE of the latent size: TTSModel needs one; only latents are compared
    vae = AudioVAE(**{**SMALL_VAE, "latent_dim": cfg["feat_dim"]})
    return off, TTSModel(backbone, vae, HFTokenizer(folder)), cfg, folder


def test_state_dict_is_the_official_one(pair):
    off, ours, _, _ = pair
    theirs = backbone_state_dict(off)
    mine = ours.backbone.state_dict()
    assert set(mine) == set(theirs) and "fusion_concat_proj.weight" in mine
    for k, v in theirs.items():
        assert torch.equal(mine[k], v), k
    vae = {k: v for k, v in off.state_dict().items() if k.startswith("audio_vae.")}
    off.load_state_dict({**mine, **vae}, strict=True)  # and back


@pytest.mark.parametrize("mode", ["zero_shot", "continuation", "reference", "ref_continuation"])
def test_models_load_decodes_the_official_waveform(pair, mode):
    """models.load builds the AudioVAE V2 of the folder; the waveform (48 kHz, the official
    min(3, audio patches) of context decoded in front and cut) is the official one. The prompt
    after a reference has 2 patches, so the context takes the reference's last one (official)."""
    off, _, cfg, folder = pair
    model = models.load(folder)
    assert isinstance(model.vae, AudioVAEV2) and model.sample_rate == off.sample_rate == 48000
    g = torch.Generator().manual_seed(9)
    shape = (cfg["patch_size"], cfg["feat_dim"])
    has_prompt, has_ref = MODES[mode]
    prompt = torch.randn(2 if has_ref else 5, *shape, generator=g) if has_prompt else None
    reference = torch.randn(4, *shape, generator=g) if has_ref else None
    cache = None if mode == "zero_shot" else {"mode": mode, "prompt_text": PROMPT_TEXT, "audio_feat": prompt,
                                               "ref_audio_feat": reference}
    with official_temperature(off, 0.0):
        wav, _, feats = off.generate_with_prompt_cache(target_text=TEXT, prompt_cache=cache, max_len=MAX_LEN)
    got = model.synthesize_batch([TEXT], [PromptLatents(prompt) if has_prompt else None],
                                 [PROMPT_TEXT if has_prompt else None], temperature=0.0, max_len=MAX_LEN,
                                 reference_wavs=[PromptLatents(reference) if has_ref else None])[0]
    close(got.patches, feats, "generated latents", GEN_TOL)
    assert got.sample_rate == 48000
    close(got.wav, wav[0], "waveform", GEN_TOL)


def test_config_round_trip(pair):
    off, ours, cfg, folder = pair
    bb = ours.backbone.config
    assert (bb["residual_fusion"], bb["dit_condition_mode"]) == ("concat", "prefix")
    assert bb["residual_lm_no_rope"] == cfg["residual_lm_no_rope"] and bb["patch_size"] == cfg["patch_size"]
    assert (ours.backbone.residual_lm.rope is None) == cfg["residual_lm_no_rope"]
    back = to_official_config(json.loads(json.dumps(bb)))
    assert back["architecture"] == "voxcpm2"
    schema = import_official_v2().VoxCPMConfig
    written = json.loads((folder / "config.json").read_text())
    assert schema.model_validate(back).model_dump() == schema.model_validate(written).model_dump()


def test_v2_defaults_and_mixed_switches():
    cfg = small_official_v2_config()
    for key in ("patch_size", "residual_lm_num_layers", "scalar_quantization_latent_dim", "max_length",
                "residual_lm_no_rope"):
        cfg.pop(key)
    ours = from_official_config(cfg)  # absent keys: the official VoxCPM2 defaults
    assert (ours["patch_size"], ours["residual_lm_layers"], ours["fsq"]["latent_dim"], ours["max_length"]) == \
        (4, 8, 512, 8192)
    assert ours["residual_lm_no_rope"] is False
    with pytest.raises(ValueError, match="model.residual_fusion=concat with model.dit_condition_mode=sum"):
        to_official_config({**ours, "dit_condition_mode": "sum"})
    v1 = from_official_config(small_official_v2_config(architecture="voxcpm"))
    with pytest.raises(ValueError, match="model.residual_lm_no_rope"):
        to_official_config({**v1, "residual_lm_no_rope": True})


def official_states(off, b):
    """The official VoxCPM2 forward's intermediate tensors, computed with its own submodules."""
    tm, am = b["text_mask"].float().unsqueeze(-1), b["audio_mask"].float().unsqueeze(-1)
    feat = off.enc_to_lm_proj(off.feat_encoder(b["audio_feats"]))
    scale = off.config.lm_config.scale_emb if off.config.lm_config.use_mup else 1.0
    h, _ = off.base_lm(inputs_embeds=tm * off.base_lm.embed_tokens(b["text_tokens"]) * scale + am * feat,
                       is_causal=True)
    hb = off.fsq_layer(h) * am + h * tm
    r, _ = off.residual_lm(inputs_embeds=off.fusion_concat_proj(torch.cat((hb, am * feat), -1)), is_causal=True)
    return dict(feat=feat, tslm=h, bottleneck=hb, ralm=r)


def make_batch(cfg):
    g = torch.Generator().manual_seed(1)
    d = cfg["feat_dim"]
    items = [pack_utterance(torch.randint(128, 200, (7,), generator=g), torch.randn(11, d, generator=g),
                            patch_size=cfg["patch_size"]),
             pack_utterance(torch.randint(128, 200, (5,), generator=g), torch.randn(6, d, generator=g),
                            torch.randint(128, 200, (4,), generator=g), torch.randn(5, d, generator=g),
                            patch_size=cfg["patch_size"])]
    return collate_packed(items)


@torch.no_grad()
def test_teacher_forced_states_match(pair):
    off, ours, cfg, _ = pair
    batch = make_batch(cfg)
    ref, mine = official_states(off, batch), ours.backbone.hidden_states(batch)
    am, tm = batch["audio_mask"], batch["text_mask"]
    real = am | tm
    close(mine["feat_embed"][am], ref["feat"][am], "LocEnc")
    close(mine["tslm"][real], ref["tslm"][real], "TSLM")
    close(mine["bottleneck"][real], ref["bottleneck"][real], "FSQ")
    close(mine["ralm"][real], ref["ralm"][real], "RALM (concat fusion)")
    lm_h, res_h = shift_right(ref["bottleneck"]), shift_right(ref["ralm"])
    flat = torch.cat((off.lm_to_dit_proj(lm_h), off.res_to_dit_proj(res_h)), -1)  # the official dit_hidden
    mu = ours.backbone.dit_condition(lm_h, res_h)
    close(mu.flatten(-2), flat, "LocDiT prefix condition")


@torch.no_grad()
def test_locdit_velocity_matches(pair):
    off, ours, cfg, _ = pair
    g = torch.Generator().manual_seed(2)
    n, p, d, hd = 6, cfg["patch_size"], cfg["feat_dim"], cfg["dit_config"]["hidden_dim"]
    x, cond = torch.randn(n, p, d, generator=g), torch.randn(n, p, d, generator=g)
    mu, t = torch.randn(n, 2, hd, generator=g), torch.rand(n, generator=g)
    ref = off.feat_decoder.estimator(x.transpose(1, 2), mu.flatten(1), t, cond.transpose(1, 2), torch.zeros(n))
    close(ours.backbone.feat_decoder.estimator(x, mu, t, cond), ref.transpose(1, 2), "velocity")


def test_training_losses_match_official(pair):
    """Same random draws -> the official VoxCPM2 forward's flow-matching and stop losses."""
    off, ours, cfg, _ = pair
    batch, bb = make_batch(cfg), ours.backbone
    inputs = dict(text_tokens=batch["text_tokens"], text_mask=batch["text_mask"].int(),
                  audio_feats=batch["audio_feats"], audio_mask=batch["audio_mask"].int(),
                  loss_mask=batch["loss_mask"].int(), position_ids=torch.zeros_like(batch["text_tokens"]),
                  labels=batch["stop_labels"])
    off.train(), bb.train()
    try:
        torch.manual_seed(3)
        ref = off(**inputs)
        torch.manual_seed(3)  # replay the official compute_loss draws (voxcpm 2.0.3 order)
        b, s, p, d = batch["audio_feats"].shape
        keep = torch.rand(b * s) > off.feat_decoder.training_cfg_rate
        torch.rand(b * s)                     # noisy-condition mask (probability 0)
        torch.randn(b * s, d, p)              # noisy-condition noise (scale 0)
        torch.randn(b * s)                    # r
        t = torch.sigmoid(torch.randn(b * s) - 0.4)
        torch.rand(b * s)                     # r != t mask (ratio 0)
        z = torch.randn(b * s, d, p).transpose(1, 2)
        sel = batch["loss_mask"].reshape(-1)
        mine = bb(batch, t=t[sel], noise=z[sel], cfg_keep=keep[sel])
    finally:
        off.eval(), bb.eval()
    close(mine["flow_loss"], ref["loss/diff"], "flow loss")
    close(mine["stop_loss"], ref["loss/stop"], "stop loss")


@contextlib.contextmanager
def official_temperature(off, temperature):
    """The official sampler with its initial noise scaled by `temperature` (0: deterministic)."""
    off.feat_decoder.forward = functools.partial(type(off.feat_decoder).forward, off.feat_decoder,
                                                 temperature=temperature)
    try:
        yield
    finally:
        del off.feat_decoder.forward


def official_latents(off, text, mode, prompt=None, reference=None, temperature=0.0, seed=None, max_len=4096):
    """`VoxCPM2Model.generate_with_prompt_cache`'s new latent patches; the prompt cache holds the
    latents as `build_prompt_cache` would (modes: continuation, reference, ref_continuation)."""
    cache = None
    if mode != "zero_shot":
        cache = {"mode": mode, "prompt_text": PROMPT_TEXT, "audio_feat": prompt, "ref_audio_feat": reference}
    with official_temperature(off, temperature):
        if seed is not None:
            torch.manual_seed(seed)
        _, _, feats = off.generate_with_prompt_cache(target_text=text, prompt_cache=cache, max_len=max_len)
    return feats


MODES = {"zero_shot": (False, False), "continuation": (True, False), "reference": (False, True),
         "ref_continuation": (True, True)}  # official mode: (prompt, reference)


@pytest.mark.parametrize("temperature,seed", [(0.0, None), (1.0, 11)], ids=["t0", "t1_seeded"])
@pytest.mark.parametrize("mode", list(MODES))
def test_generated_latents_match_official(pair, mode, temperature, seed):
    off, ours, cfg, _ = pair
    g = torch.Generator().manual_seed(7)
    shape = (cfg["patch_size"], cfg["feat_dim"])
    has_prompt, has_ref = MODES[mode]
    prompt = torch.randn(5, *shape, generator=g) if has_prompt else None
    reference = torch.randn(4, *shape, generator=g) if has_ref else None
    ref = official_latents(off, TEXT, mode, prompt, reference, temperature, seed, MAX_LEN)
    assert ours.encode_text(TEXT) == off.text_tokenizer(TEXT)
    got = ours.synthesize_batch([TEXT], [PromptLatents(prompt) if has_prompt else None],
                                [PROMPT_TEXT if has_prompt else None], temperature=temperature, seed=seed,
                                max_len=MAX_LEN, reference_wavs=[PromptLatents(reference) if has_ref else None])[0]
    assert got.stopped == (len(got.patches) < MAX_LEN)  # the same length: the stop head agreed at every step
    close(got.patches, ref, "generated latents", GEN_TOL)


def test_batch_with_mixed_modes_matches_one_by_one(pair):
    """Left-padded items of every mode in one batch give each item's own latents."""
    _, ours, cfg, _ = pair
    g = torch.Generator().manual_seed(8)
    shape = (cfg["patch_size"], cfg["feat_dim"])
    prompts = [None, PromptLatents(torch.randn(3, *shape, generator=g)), None,
               PromptLatents(torch.randn(2, *shape, generator=g))]
    refs = [None, None, PromptLatents(torch.randn(6, *shape, generator=g)),
            PromptLatents(torch.randn(2, *shape, generator=g))]
    texts = ["hello world", "we test this", "a test", "hello"]
    ptexts = [None if p is None else PROMPT_TEXT for p in prompts]
    kw = dict(temperature=1.0, seed=3, max_len=12)
    batch = ours.synthesize_batch(texts, prompts, ptexts, reference_wavs=refs, **kw)
    for i, got in enumerate(batch):
        alone = ours.synthesize_batch([texts[i]], [prompts[i]], [ptexts[i]], reference_wavs=[refs[i]],
                                      **{**kw, "seed": 3 + i})[0]
        close(got.patches, alone.patches, f"item {i}", GEN_TOL)


def test_reference_needs_voxcpm2():
    from test_inference import make_model

    v1 = make_model()
    latents = PromptLatents(torch.zeros(2, v1.backbone.patch_size, v1.backbone.feat_dim))
    with pytest.raises(ValueError, match="a reference wav needs a VoxCPM2 model"):
        v1.synthesize_batch(["abc"], reference_wavs=[latents], max_len=3)


def test_streamed_waveform_joins_to_the_one_shot(pair):
    """generate_streaming on a loaded VoxCPM2 folder: the AudioVAE V2 streaming decoder's chunks,
    the 3-patch context cut, join to `generate`'s 48 kHz waveform."""
    _, _, cfg, folder = pair
    model = models.load(folder)
    g = torch.Generator().manual_seed(2)
    prompt = PromptLatents(torch.randn(4, cfg["patch_size"], cfg["feat_dim"], generator=g))
    kw = dict(prompt_wav=prompt, prompt_text=PROMPT_TEXT, temperature=0.0, max_len=12)
    wav, rate = model.generate("hello world", **kw)
    streamed = torch.cat(list(model.generate_streaming("hello world", chunk_patches=2, **kw)))
    assert rate == 48000 and wav.numel() > 0
    close(streamed, wav, "streamed waveform")
