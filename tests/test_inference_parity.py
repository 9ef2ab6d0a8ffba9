"""Generation parity with the official `voxcpm` package (2.0.3): a small random official VoxCPMModel
saved in the official folder format, loaded the way `make synth` loads it (models.load), gives the
same latents and waveform as the official `generate_with_prompt_cache` - zero-shot and cloning,
English and Chinese - with the initial noise at temperature 0 (the official sampler patched to 0)
and, with the same seed, at temperature 1; cloning also against `VoxCPMModel.generate` (no prompt
cache) over prompt lengths around whole patches. Our export loads back into the official package."""
from __future__ import annotations

import contextlib
import functools
import json

import numpy as np
import pytest
import soundfile as sf
import torch

import models
from models.official_reference import (SMALL_VAE, backbone_state_dict, build_official, import_official, install_stubs,
                             small_official_config, tiny_tokenizer)
from test_inference import tune_stop

install_stubs()  # torchaudio stand-in before the package is imported
pytest.importorskip("voxcpm")
TOL = 1e-4
CASES = {"en": ("hello world, this is a test", "we test"), "zh": ("你好世界我们是中文语音合成测试", "语音合成")}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def save_official_folder(off, folder) -> None:
    """The release layout: config.json, model.safetensors, audiovae.pth, tokenizer files."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    config = {**off.config.model_dump(), "audio_vae_config": SMALL_VAE}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    save_file({k: v.contiguous() for k, v in backbone_state_dict(off).items()}, str(folder / "model.safetensors"))
    vae = {k[len("audio_vae."):]: v for k, v in off.state_dict().items() if k.startswith("audio_vae.")}
    torch.save({"state_dict": vae}, folder / "audiovae.pth")
    off.text_tokenizer.tokenizer.save_pretrained(str(folder))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import_official()  # its torchaudio stand-in reads wavs with soundfile
    off = build_official(small_official_config(), seed=0, tokenizer=tiny_tokenizer())
    with torch.no_grad():
        tune_stop(off, bias=0.30, direction_seed=6)  # the cases stop by the head after 5, 25, 20, 13 patches
    root = tmp_path_factory.mktemp("parity")
    save_official_folder(off, root / "official")
    prompt = root / "prompt.wav"
    sf.write(prompt, (np.random.default_rng(0).standard_normal(173) * 0.1).astype(np.float32), 16000)
    ours = models.load(root / "official")  # what `make synth` does
    return off, ours, root, str(prompt)


@contextlib.contextmanager
def official_temperature(off, temperature):
    """The official sampler with its initial noise scaled by `temperature` (0: deterministic)."""
    off.feat_decoder.forward = functools.partial(type(off.feat_decoder).forward, off.feat_decoder,
                                                 temperature=temperature)
    try:
        yield
    finally:
        del off.feat_decoder.forward


def official_generate(off, text, prompt_text=None, prompt_wav=None, temperature=0.0, seed=None, max_len=4096, **kw):
    """The prompt-cache path (what the public `VoxCPM.generate` runs): (waveform, new latents)."""
    with official_temperature(off, temperature):
        if seed is not None:
            torch.manual_seed(seed)
        cache = off.build_prompt_cache(prompt_text=prompt_text, prompt_wav_path=prompt_wav) if prompt_wav else None
        wav, _, feats = off.generate_with_prompt_cache(target_text=text, prompt_cache=cache, max_len=max_len, **kw)
    context = min(2, len(cache["audio_feat"])) if cache else 0  # the official keeps prompt context patches
    return wav[0], feats[context:]


def official_plain(off, text, prompt_text=None, prompt_wav=None, max_len=4096):
    """`VoxCPMModel.generate`, the path without a prompt cache: its waveform at temperature 0."""
    with official_temperature(off, 0.0):
        kw = dict(prompt_text=prompt_text, prompt_wav_path=prompt_wav) if prompt_wav else {}
        return off.generate(text, max_len=max_len, **kw)[0]


def close(a, b, what):
    assert a.shape == b.shape, (what, a.shape, b.shape)
    err = (a - b).abs().max().item()
    assert err <= TOL, f"{what}: max abs diff {err:.3g} > {TOL}"


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("prompt", [False, True], ids=["zero_shot", "cloning"])
def test_generation_matches_official(setup, lang, prompt):
    off, ours, _, prompt_wav = setup
    text, prompt_text = CASES[lang]
    kw = dict(prompt_text=prompt_text, prompt_wav=prompt_wav) if prompt else {}
    ref_wav, ref_feats = official_generate(off, text, **kw)
    assert ours.encode_text(text) == off.text_tokenizer(text)  # incl. Chinese multi-character splitting
    got = ours.synthesize_batch([text], [kw.get("prompt_wav")], [kw.get("prompt_text")], temperature=0.0)[0]
    assert got.stopped and got.patches.shape[0] > 4  # the stop head ended it, after the minimum
    close(got.patches, ref_feats, "latents")
    close(got.wav, ref_wav, "waveform")


# Prompt lengths in samples, as (whole patches, extra samples): shorter than a patch, a patch and one
# sample either side, two and three patches exactly and +-1, and a long prompt.
PROMPT_LENGTHS = [(0, 7), (1, -1), (1, 0), (1, 1), (2, -1), (2, 0), (2, 1), (3, 0), (60, 13)]


@pytest.mark.parametrize("whole,extra", PROMPT_LENGTHS, ids=[f"{w}p{e:+d}" for w, e in PROMPT_LENGTHS])
def test_cloning_prompt_lengths_match_both_official_paths(setup, tmp_path, whole, extra):
    """Ours = the prompt-cache path (the public `VoxCPM.generate`). The official `VoxCPMModel.generate`
    (no cache) returns the audio of its last min(2, prompt patches) prompt patches in front of the
    new audio: 2 patches longer, the same samples after them. A 1-patch prompt: the cache path cuts 2
    patches though only 1 was put in front, so it loses the first new patch; we keep it."""
    off, ours, _, _ = setup
    patch = ours.backbone.patch_size * ours.vae.hop_length
    wav = tmp_path / "prompt.wav"
    n = whole * patch + extra
    sf.write(wav, (np.random.default_rng(n).standard_normal(n) * 0.1).astype(np.float32), 16000)
    text, prompt_text = CASES["en"]
    cap = 24  # the long prompt would run long; the short ones stop after 5-7 patches
    got = ours.synthesize_batch([text], [str(wav)], [prompt_text], temperature=0.0, max_len=cap)[0]
    context = min(2, -(-n // patch))
    plain = official_plain(off, text, prompt_text, str(wav), max_len=cap)
    close(got.wav, plain[context * patch:], "waveform vs VoxCPMModel.generate after its context")
    cached, feats = official_generate(off, text, prompt_text, str(wav), max_len=cap)
    close(got.patches, feats, "latents vs the prompt-cache path")
    close(got.wav[(2 - context) * patch:], cached, "waveform vs the prompt-cache path")


def test_zero_shot_matches_both_official_paths(setup):
    off, ours, _, _ = setup
    got = ours.synthesize_batch([CASES["zh"][0]], temperature=0.0)[0]
    close(got.wav, official_plain(off, CASES["zh"][0]), "waveform vs VoxCPMModel.generate")


class NeverStop(torch.nn.Module):
    def forward(self, x):
        return torch.stack([torch.ones_like(x[..., 0]), torch.zeros_like(x[..., 0])], -1)


def test_length_cap_matches_official(setup):
    """Without stopping both run to min(int(6 * target tokens + 10), max_len) patches."""
    off, ours, _, prompt_wav = setup
    text, prompt_text = "你好世界", "语音合成"
    head = off.stop_head
    off.stop_head = NeverStop()
    try:
        ref_wav, ref_feats = official_generate(off, text, prompt_text, prompt_wav)
    finally:
        off.stop_head = head
    got = ours.synthesize_batch([text], [prompt_wav], [prompt_text], temperature=0.0, stop=False)[0]
    assert got.patches.shape[0] == int(len(off.text_tokenizer(text)) * 6.0 + 10)
    close(got.patches, ref_feats, "latents")
    close(got.wav, ref_wav, "waveform")
    capped = ours.synthesize_batch([text], [prompt_wav], [prompt_text], temperature=0.0, stop=False, max_len=7)[0]
    assert capped.patches.shape[0] == 7


def test_seeded_noise_matches_official(setup):
    """Temperature 1: seed s gives the official result after torch.manual_seed(s)."""
    off, ours, _, prompt_wav = setup
    text, prompt_text = CASES["en"]
    ref_wav, ref_feats = official_generate(off, text, prompt_text, prompt_wav, temperature=1.0, seed=11)
    got = ours.synthesize_batch([text], [prompt_wav], [prompt_text], temperature=1.0, seed=11)[0]
    close(got.patches, ref_feats, "latents")
    close(got.wav, ref_wav, "waveform")


def test_synth_cli_wav_matches_official(setup, tmp_path):
    from voxlab.cli.synth import main

    off, _, root, prompt_wav = setup
    text, prompt_text = CASES["zh"]
    out = tmp_path / "zh.wav"
    assert main(["--model", str(root / "official"), "--text", text, "--out", str(out), "--prompt-wav", prompt_wav,
                 "--prompt-text", prompt_text, "--temperature", "0", "--retry-badcase"]) == 0
    ref_wav, _ = official_generate(off, text, prompt_text, prompt_wav)
    wav, sr = sf.read(out, dtype="float32")
    assert sr == 16000
    close(torch.from_numpy(wav), ref_wav.clamp(-1, 1), "16-bit wav")  # PCM16 step 3e-5


def test_export_loads_in_the_official_package(setup, tmp_path):
    off, ours, _, prompt_wav = setup
    folder = models.export(ours, tmp_path / "export")
    cls = import_official().VoxCPMModel
    again = cls.from_local(str(folder), optimize=False, device="cpu")
    text, prompt_text = CASES["en"]
    ref_wav, ref_feats = official_generate(off, text, prompt_text, prompt_wav)
    wav, feats = official_generate(again, text, prompt_text, prompt_wav)
    close(feats, ref_feats, "latents")
    close(wav, ref_wav, "waveform")


class StopAfter(torch.nn.Module):
    """A stop head that says 'go on' for its first `calls` calls and 'stop' from then on."""

    def __init__(self, calls):
        super().__init__()
        self.calls, self.seen = calls, 0

    def forward(self, x):
        self.seen += 1
        go = self.seen <= self.calls
        return torch.stack([torch.full_like(x[..., 0], float(go)), torch.full_like(x[..., 0], float(not go))], -1)


@pytest.mark.parametrize("calls", [10**9, None], ids=["always_bad", "bad_then_good"])
def test_retry_badcase_matches_official(setup, calls):
    """Seeded noise at temperature 1: a run that reaches the cap (ratio 2: int(2 x 4 tokens + 10) = 18
    patches) is a bad case. Always bad: 3 runs, the last kept; bad then good: the second run stops."""
    off, ours, _, prompt_wav = setup
    text, prompt_text, ratio = "你好世界", "语音合成", 2.0
    cap = int(len(off.text_tokenizer(text)) * ratio + 10)
    heads = off.stop_head, ours.backbone.stop_head
    try:
        off.stop_head = StopAfter(calls or cap)
        ref_wav, ref_feats = official_generate(off, text, prompt_text, prompt_wav, temperature=1.0, seed=5,
                                               retry_badcase=True, retry_badcase_ratio_threshold=ratio)
        ours.backbone.stop_head = StopAfter(calls or cap)
        got = ours.synthesize_batch([text], [prompt_wav], [prompt_text], temperature=1.0, seed=5,
                                    retry_badcase=True, retry_badcase_ratio_threshold=ratio)[0]
        assert got.attempts == (3 if calls else 2) and ours.backbone.stop_head.seen == off.stop_head.seen
        assert got.patches.shape[0] == (cap if calls else 4)
        close(got.patches, ref_feats, "latents of the kept run")
        close(got.wav, ref_wav, "waveform of the kept run")
        ours.backbone.stop_head = StopAfter(calls or cap)
        once = ours.synthesize_batch([text], [prompt_wav], [prompt_text], temperature=1.0, seed=5,
                                     retry_badcase_ratio_threshold=ratio)[0]  # retry off (our default)
        assert once.attempts == 1 and once.patches.shape[0] == cap
        ours.backbone.stop_head = StopAfter(calls or cap)
        flat = ours.synthesize_batch([text], [prompt_wav], [prompt_text], temperature=0.0, retry_badcase=True)[0]
        assert flat.attempts == 1  # deterministic: a second run would repeat the first
    finally:
        off.stop_head, ours.backbone.stop_head = heads
