"""Reduced-precision weights chosen at load time (`models.load(path, dtype=...)`, TTSModel.set_precision):
bfloat16 and int8 generate latents close to float32's on a tiny model (temperature 0, 10 patches,
the differences compounding through the autoregressive loop), and the weights are what was asked."""
from __future__ import annotations

import pytest
import torch

import models
from models.cpu_linear import Int8Linear, int8_available
from test_inference import TEXTS, make_model

# Max |latent - float32 latent| over 10 patches; the latents span about +-1.3 here. Measured: bf16
# 0.05, int8 0.035. A broken path (wrong scale, transposed weight, lost bias) is off by the order of 1.
LATENT_TOL = {"bfloat16": 0.15, "int8": 0.15}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def reference():
    # Module-scoped fixtures run before the function-scoped thread setting: set it here too, since
    # the thread count changes float32 summation order (bitwise) on some CPUs.
    torch.set_num_threads(1)
    return make_model().synthesize_batch(TEXTS[:2], temperature=0.0, max_len=10, stop=False)


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_reduced_precision_latents_close_to_float32(reference, dtype, tmp_path):
    if dtype == "int8" and not int8_available():
        pytest.skip("this torch build has no fbgemm/x86 quantized engine")
    folder = models.export(make_model(), tmp_path / "m")
    model = models.load(folder, dtype=dtype)
    mlp = model.backbone.base_lm.layers[0].mlp
    if dtype == "int8":  # q/k/v and gate/up fused into one int8 layer each
        layer = mlp.gate_up_proj
        attn = model.backbone.feat_decoder.estimator.decoder.layers[0].self_attn
        assert isinstance(layer, Int8Linear) and isinstance(attn.qkv_proj, Int8Linear)
        assert isinstance(attn.o_proj, Int8Linear) and not hasattr(attn, "q_proj") and not hasattr(mlp, "up_proj")
        assert model.backbone.lm_to_dit_proj.weight.dtype == torch.float32  # projections stay float
    else:
        assert mlp.gate_proj.weight.dtype == torch.bfloat16
    got = model.synthesize_batch(TEXTS[:2], temperature=0.0, max_len=10, stop=False)
    for ref, out in zip(reference, got):
        assert out.patches.dtype == torch.float32 or dtype == "bfloat16"
        err = (ref.patches - out.patches.float()).abs().max().item()
        assert 0 < err <= LATENT_TOL[dtype], f"{dtype}: max latent difference {err:.3g}"
        assert out.wav.shape == ref.wav.shape


@pytest.mark.skipif(not int8_available(), reason="this torch build has no fbgemm/x86 quantized engine")
@torch.no_grad()
def test_fused_int8_layer_equals_its_parts_bitwise():
    """One Int8Linear over q, k and v (and a bias on one part only) gives exactly the separate
    layers' outputs: same rows, same per-row scales, the input's one scale shared."""
    torch.manual_seed(0)
    parts = [torch.nn.Linear(64, n, bias=b) for n, b in ((64, False), (16, True), (16, False))]
    fused = Int8Linear(*parts)
    assert fused.splits == [64, 16, 16] and "64 + 16 + 16" in repr(fused)
    for rows in (1, 5, 40):
        x = torch.randn(rows, 64) * 3
        apart = torch.cat([Int8Linear(p)(x) for p in parts], dim=-1)
        assert torch.equal(fused(x), apart)
        exact = torch.cat([p(x) for p in parts], -1)
        assert (apart - exact).abs().max() < 0.05 * exact.abs().max()  # and close to float (7-bit inputs on AVX2)
    with pytest.raises(ValueError, match="same in_features"):
        Int8Linear(parts[0], torch.nn.Linear(32, 8))


def test_unknown_precision_is_refused(tmp_path):
    with pytest.raises(ValueError, match="choose one of float32, bfloat16"):
        make_model().set_precision("int4")


def test_bfloat16_vae_encodes_prompts_and_decodes_close_to_float32(reference, tmp_path):
    """`models.load(..., vae_dtype="bfloat16")`: the backbone's latents are the float32 VAE's
    (without a prompt the VAE only decodes), the waveform float32 and close to the float32 VAE's,
    cloning and streaming run, and the VAE's weights are bfloat16."""
    import numpy as np
    import soundfile as sf

    folder = models.export(make_model(), tmp_path / "m")
    model = models.load(folder, vae_dtype="bfloat16")
    assert next(model.vae.parameters()).dtype == torch.bfloat16
    got = model.synthesize_batch(TEXTS[:2], temperature=0.0, max_len=10, stop=False)
    for ref, out in zip(reference, got):
        assert torch.equal(ref.patches, out.patches) and out.wav.dtype == torch.float32
        err = (ref.wav - out.wav).abs().max().item()
        assert 0 < err <= 0.05 * max(ref.wav.abs().max().item(), 1e-3), err  # rounded, not broken
    wav = tmp_path / "p.wav"
    sf.write(wav, (np.random.default_rng(0).standard_normal(800) * 0.1).astype(np.float32), 16000)
    cloned = model.synthesize_batch([TEXTS[0]], [str(wav)], ["a b"], temperature=0.0, max_len=4, stop=False)[0]
    streamed = torch.cat(list(model.generate_streaming(TEXTS[0], str(wav), "a b", temperature=0.0, max_len=4,
                                                       stop=False)))
    assert (streamed - cloned.wav).abs().max() <= 1e-2  # bf16 convs: chunked and whole differ by rounding
    with pytest.raises(ValueError, match="choose float32 or bfloat16"):
        model.set_vae_precision("int8")
