"""Streaming generation: the causal AudioVAE decoded chunk by chunk with carried state equals the
one-shot decode, and `generate_streaming`'s joined chunks equal `generate` (zero-shot and cloning)."""
from __future__ import annotations

import pytest
import torch

from models.audiovae import AudioVAE
from test_inference import TEXTS, _one_thread, model, prompt_wav  # noqa: F401  (fixtures)

STREAM_TOL = 1e-5


@pytest.mark.parametrize("depthwise", [True, False])
def test_stream_decoder_equals_one_shot_decode(depthwise):
    torch.manual_seed(0)
    vae = AudioVAE(encoder_dim=4, encoder_rates=[2, 5, 4], latent_dim=8, decoder_dim=32, decoder_rates=[4, 5, 2],
                   depthwise=depthwise).eval()
    z = torch.randn(2, 8, 17)
    with torch.no_grad():
        whole = vae.decode(z)
        stream = vae.stream_decoder()
        parts = [stream.push(z[..., a:b]) for a, b in ((0, 1), (1, 3), (3, 4), (4, 11), (11, 17))]
    assert [p.shape[-1] for p in parts] == [40 * n for n in (1, 2, 1, 7, 6)]
    joined = torch.cat(parts, -1)
    assert joined.shape == whole.shape
    assert (joined - whole).abs().max().item() <= STREAM_TOL


@pytest.mark.parametrize("chunk_patches", [1, 3])
@pytest.mark.parametrize("cloning", [False, True], ids=["zero_shot", "cloning"])
def test_streaming_equals_generate(model, prompt_wav, cloning, chunk_patches):
    kw = dict(prompt_wav=prompt_wav, prompt_text="we test") if cloning else {}
    text = TEXTS[2] if cloning else TEXTS[0]
    whole, _ = model.generate(text, seed=3, max_len=12, **kw)
    chunks = list(model.generate_streaming(text, seed=3, max_len=12, chunk_patches=chunk_patches, **kw))
    hop = model.backbone.patch_size * model.vae.hop_length * chunk_patches
    assert all(c.numel() == hop for c in chunks[:-1]) and 0 < chunks[-1].numel() <= hop
    joined = torch.cat(chunks)
    assert joined.shape == whole.shape
    assert (joined - whole).abs().max().item() <= STREAM_TOL


def test_streaming_is_lazy_and_checks_its_input(model):
    stream = model.generate_streaming(TEXTS[1], seed=0, max_len=30, stop=False)
    first = next(stream)  # one patch's audio without generating the rest
    assert first.numel() == model.backbone.patch_size * model.vae.hop_length
    stream.close()
    with pytest.raises(ValueError, match="chunk_patches"):
        next(model.generate_streaming(TEXTS[1], chunk_patches=0))
    with pytest.raises(ValueError, match="text is empty"):
        next(model.generate_streaming(" "))


def test_synth_stream_writes_the_generate_wav(model, tmp_path, capsys):
    import soundfile as sf

    import models
    from voxlab.cli.synth import main

    folder = models.export(model, tmp_path / "m")
    base = ["--model", str(folder), "--text", TEXTS[0], "--seed", "0", "--max-len", "6"]
    assert main(base + ["--out", str(tmp_path / "whole.wav")]) == 0
    assert main(base + ["--out", str(tmp_path / "stream.wav"), "--stream"]) == 0
    assert "first chunk after" in capsys.readouterr().out
    whole, streamed = sf.read(tmp_path / "whole.wav"), sf.read(tmp_path / "stream.wav")
    assert whole[1] == streamed[1] and whole[0].shape == streamed[0].shape
    assert abs(whole[0] - streamed[0]).max() <= 1 / 32768  # 16-bit files: one step at most
    assert main(base + ["--out", str(tmp_path / "x.wav"), "--stream", "--retry-badcase"]) == 2
    assert "cannot go with --stream" in capsys.readouterr().err
    assert main(base + ["--out", str(tmp_path / "int8.wav"), "--dtype", "int8"]) == 0
    assert sf.read(tmp_path / "int8.wav")[0].shape == whole[0].shape
