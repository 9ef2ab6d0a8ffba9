"""Generation (models.tts, models.sampler), loading/export (models.tts_io) and `make synth` input
errors, on a tiny random model (no official package needed)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

import models
from models.audiovae import AudioVAE
from models.cpu_linear import pack_linears, unpack_linears
from models.official import from_official_config
from models.sampler import PatchSampler, cfg_zero_star, draw_noise, sway_timesteps, zero_init_steps
from models.tts import TTSModel
from models.tts_io import ModelPathError
from models.voxcpm import VoxCPMBackbone
from models.weights import WeightsError
from models.official_reference import SMALL_VAE, small_official_config
from voxlab.checkpoint import CheckpointError
from voxlab.text import CharTokenizer

CHARS = list(" abcdefghijklmnopqrstuvwxyz,.'你好世界中文")
TEXTS = ["hello world", "a b", "this is a much longer sentence", "你好世界"]
TOL = 1e-4


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def tune_stop(bb: VoxCPMBackbone, bias: float = -0.12, direction_seed: int = 5) -> None:
    """A stop head whose decision varies with the state (a random one says 'stop' at once): a random
    direction plus a constant feature (stop_proj row 0 = bias 1) acting as the threshold. The values
    were picked so that the test utterances end at different steps."""
    g = torch.Generator().manual_seed(direction_seed)
    w = bb.stop_head.weight.data
    w[1] = w[0] + 0.5 * torch.randn(w.shape[1], generator=g)
    bb.stop_proj.weight.data[0] = 0
    bb.stop_proj.bias.data[0] = 1.0
    w[1, 0] = w[0, 0] + bias / F.silu(torch.tensor(1.0))


def make_model(seed: int = 0) -> TTSModel:
    torch.manual_seed(seed)
    kwargs = {k: v for k, v in from_official_config(small_official_config()).items() if k != "_target_"}
    bb = VoxCPMBackbone(**kwargs)
    tune_stop(bb)
    return TTSModel(bb, AudioVAE(**SMALL_VAE), CharTokenizer(CHARS))


@pytest.fixture(scope="module")
def model():
    return make_model()


@pytest.fixture(scope="module")
def prompt_wav(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompt") / "prompt.wav"
    sf.write(path, (np.random.default_rng(0).standard_normal(173) * 0.1).astype(np.float32), 16000)
    return str(path)


def close(a, b, tol=TOL):
    assert a.shape == b.shape, (a.shape, b.shape)
    err = (a - b).abs().max().item() if a.numel() else 0.0
    assert err <= tol, f"max abs diff {err:.3g} > {tol}"


# ---- sampler --------------------------------------------------------------------------------------
def test_schedule_and_cfg_zero_star():
    t = sway_timesteps(10)
    assert t[0] == 1 and abs(t[-1]) < 1e-7 and bool((t[1:] < t[:-1]).all())
    assert t[5] > 0.5  # sway spends more steps near t = 1 (pure noise)
    assert (zero_init_steps(10), zero_init_steps(49)) == (1, 2)
    vc, vu = torch.tensor([[[1.0, 2.0]]]), torch.tensor([[[2.0, 0.0]]])
    s = (1 * 2 + 2 * 0) / (4 + 1e-8)  # <vc, vu> / |vu|^2
    close(cfg_zero_star(vc, vu, 2.0), vu * s + 2.0 * (vc - vu * s), 1e-7)
    assert torch.equal(draw_noise(3, 2, 8, 0.0), torch.zeros(3, 2, 8))
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    close(draw_noise(1, 2, 8, 0.5, [g1]), 0.5 * torch.randn(1, 8, 2, generator=g2).transpose(1, 2), 0)


@torch.no_grad()
def test_velocity_matches_estimator(model):
    est = model.backbone.feat_decoder.estimator
    sampler = PatchSampler(est, timesteps=10, cfg=2.0)
    g = torch.Generator().manual_seed(0)
    x, cond = torch.randn(3, 2, 8, generator=g), torch.randn(3, 2, 8, generator=g)
    mu = torch.randn(3, est.in_proj.out_features, generator=g)
    for step in (1, 5, 9):
        t = sampler.schedule[step][0].expand(3)
        close(sampler.velocity(x, mu, est.cond_proj(cond), step), est(x, mu, t, cond), 1e-5)


# ---- the generation loop --------------------------------------------------------------------------
@torch.no_grad()
def reference_generate(m: TTSModel, text: str, steps: int, seed: int, cfg=2.0, timesteps=10, temperature=1.0):
    """No caches: every step runs the whole sequence `[text, 101, generated patches]` again."""
    bb = m.backbone
    ids = m.encode_text(text) + [bb.audio_start_id]
    sampler = PatchSampler(bb.feat_decoder.estimator, timesteps, cfg)
    gen = torch.Generator().manual_seed(seed)
    p, d = bb.patch_size, bb.feat_dim
    patches, prev = [], torch.zeros(1, p, d)
    for _ in range(steps):
        n = len(ids) + len(patches)
        feats = torch.zeros(1, n, p, d)
        if patches:
            feats[0, len(ids):] = torch.cat(patches)
        batch = {"text_tokens": torch.tensor([ids + [0] * len(patches)]),
                 "text_mask": torch.arange(n)[None] < len(ids), "audio_feats": feats,
                 "audio_mask": torch.arange(n)[None] >= len(ids)}
        states = bb.hidden_states(batch)
        ralm = states.get("ralm")
        mu = bb.dit_condition(states["bottleneck"][:, -1], None if ralm is None else ralm[:, -1])
        prev = sampler(mu, prev, draw_noise(1, p, d, temperature, [gen]))
        patches.append(prev)
    return torch.cat(patches)


def test_kv_cache_generation_equals_recompute(model):
    steps = 12
    out = model.synthesize_batch([TEXTS[0]], seed=7, max_len=steps, stop=False)[0]
    assert out.patches.shape[0] == steps
    close(out.patches, reference_generate(model, TEXTS[0], steps, seed=7))


@pytest.mark.parametrize("change", [{"residual_lm_layers": 0, "fsq": {"enabled": False}},
                                    {"condition_on_residual": False}, {"residual_input_e": False},
                                    {"fsq": {"quantize": False}}], ids=["no_ralm", "no_hres", "no_e1", "nofsq"])
def test_ablations_generate_with_caches(change):
    """Every item of a batch equals the cache-free reference with its own seed (item i: seed + i),
    not only the first: fails when an ablation's caches mix up the rows of a batch, e.g. the
    shorter text's padding or another row's state leaking into the second item."""
    torch.manual_seed(0)
    kwargs = {k: v for k, v in from_official_config(small_official_config()).items() if k != "_target_"}
    for key, value in change.items():
        kwargs[key] = {**kwargs[key], **value} if isinstance(value, dict) else value
    m = TTSModel(VoxCPMBackbone(**kwargs), AudioVAE(**SMALL_VAE), CharTokenizer(CHARS))
    texts = [TEXTS[1], TEXTS[0]]
    out = m.synthesize_batch(texts, seed=3, max_len=6, stop=False)
    assert len(out) == len(texts)
    for i, (text, item) in enumerate(zip(texts, out)):
        assert item.patches.shape[0] == 6
        close(item.patches, reference_generate(m, text, 6, seed=3 + i))


def test_batched_equals_one_by_one(model, prompt_wav):
    texts = TEXTS
    wavs, ptexts = [None, prompt_wav, None, None], [None, "we test", None, None]
    batched = model.synthesize_batch(texts, wavs, ptexts, seed=0)
    lengths = [b.patches.shape[0] for b in batched]
    assert len(set(lengths)) >= 3, lengths                  # items finish at different steps...
    assert any(b.stopped for b in batched) and not all(b.stopped for b in batched)  # ...by the head and the cap
    for i, b in enumerate(batched):
        one = model.synthesize_batch([texts[i]], [wavs[i]], [ptexts[i]], seed=i)[0]
        assert (one.patches.shape[0], one.stopped) == (b.patches.shape[0], b.stopped)
        close(b.patches, one.patches)
        close(b.wav, one.wav)
        assert b.wav.numel() == b.patches.shape[0] * 2 * model.vae.hop_length


def test_per_item_max_len_in_a_batch_equals_each_item_alone(model, prompt_wav):
    caps = [3, 7, 5]
    texts, wavs, ptexts = TEXTS[:3], [None, str(prompt_wav), None], [None, "a b", None]
    batched = model.synthesize_batch(texts, wavs, ptexts, seed=0, max_len=caps, stop=False)
    assert [s.patches.shape[0] for s in batched] == caps
    for i, cap in enumerate(caps):
        one = model.synthesize_batch([texts[i]], [wavs[i]], [ptexts[i]], seed=i, max_len=cap, stop=False)[0]
        assert (one.patches - batched[i].patches).abs().max() <= TOL
    with pytest.raises(ValueError, match="3 texts but 2 max_len"):
        model.synthesize_batch(texts, max_len=[3, 4])
    with pytest.raises(ValueError, match="max_len=0"):
        model.synthesize_batch(texts, max_len=[3, 0, 4])


def test_length_cap_and_stop(model):
    r = model.synthesize_batch(["a b", "a b"], seed=0, stop=False)
    assert [x.patches.shape[0] for x in r] == [6 * 3 + 10] * 2   # "a b": 3 tokens
    assert model.synthesize_batch(["a b"], seed=0, stop=False, max_len=10)[0].patches.shape[0] == 10
    # a stop head that always says stop: the first 4 patches are kept (official `i > min_len`, min_len 2)
    m = make_model()
    m.backbone.stop_head.weight.data[1] = m.backbone.stop_head.weight.data[0] + 10.0
    m.backbone.stop_proj.weight.data.zero_()
    m.backbone.stop_proj.bias.data.fill_(1.0)
    s = m.synthesize_batch(["hello"], temperature=0)[0]
    assert s.stopped and s.patches.shape[0] == 4


def test_seed_determinism(model):
    a, sr = model.generate(TEXTS[3], seed=3)
    b, _ = model.generate(TEXTS[3], seed=3)
    c, _ = model.generate(TEXTS[3], seed=4)
    assert sr == 16000 and a.dim() == 1 and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    z1, _ = model.generate(TEXTS[3], temperature=0.0, seed=1)
    z2, _ = model.generate(TEXTS[3], temperature=0.0, seed=2)
    assert torch.equal(z1, z2)


def test_cpu_packing_keeps_outputs_and_state(monkeypatch):
    import models.cpu_linear as cpu_linear

    monkeypatch.setattr(cpu_linear, "MIN_PACKED_WEIGHT", 0)  # the tiny model's layers are below the size limit
    m = make_model()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    ref = m.synthesize_batch([TEXTS[0]], seed=1, max_len=8, stop=False)[0]
    assert pack_linears(m.backbone.feat_decoder) > 0
    fast = m.synthesize_batch([TEXTS[0]], seed=1, max_len=8, stop=False)[0]
    close(fast.patches, ref.patches)
    assert m.state_dict().keys() == before.keys()
    # a weight changed after packing is re-packed
    lin = m.backbone.feat_decoder.estimator.out_proj
    x = torch.randn(4, lin.in_features)
    with torch.no_grad():
        lin.weight.mul_(2)
        close(lin(x), F.linear(x, lin.weight, lin.bias), 1e-5)
    unpack_linears(m.backbone)
    assert "forward" not in lin.__dict__


# ---- loading and export ---------------------------------------------------------------------------
def lightning_checkpoint(m: TTSModel, path, **extra):
    """What lightning_modules/tts.py saves (the fields models.load reads)."""
    ckpt = {"state_dict": {f"model.{k}": v for k, v in m.backbone.state_dict().items()},
            "voxlab_config": {"experiment": "tiny", "model": {"_target_": "models.voxcpm.VoxCPMBackbone",
                                                               **json.loads(json.dumps(m.backbone.config))}},
            "voxlab_vae": {"config": m.vae.config(), "state_dict": m.vae.state_dict()},
            "voxlab_tokenizer": {"kind": "char", "chars": m.tokenizer.chars}, "global_step": 5, **extra}
    torch.save(ckpt, path)
    return path


def test_checkpoint_run_folder_export_round_trip(model, tmp_path):
    ref = model.synthesize_batch([TEXTS[0]], seed=2, max_len=10)[0]
    ckpt = lightning_checkpoint(model, tmp_path / "tts.ckpt")
    run = tmp_path / "runs" / "tiny" / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    lightning_checkpoint(model, run / "checkpoints" / "last.ckpt")
    outs = []
    for src in (ckpt, run):
        loaded = models.load(src)  # CPU: packed LocEnc / LocDiT weights (other kernels, same function)
        outs.append(loaded.synthesize_batch([TEXTS[0]], seed=2, max_len=10)[0].wav)
        close(outs[-1], ref.wav, 1e-5)
    assert torch.equal(outs[0], outs[1])
    folder = models.export(loaded, tmp_path / "export")
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "audiovae.pth", "tokenizer.json", "voxlab_tokenizer.json"} <= names
    assert "audio_vae_config" in json.loads((folder / "config.json").read_text())
    vae_state = torch.load(folder / "audiovae.pth", weights_only=True)["state_dict"]
    assert any(k.endswith("weight_g") for k in vae_state) and any(k.endswith("weight_v") for k in vae_state)
    again = models.load(folder)
    assert torch.equal(again.synthesize_batch([TEXTS[0]], seed=2, max_len=10)[0].wav, outs[0])
    # the Llama tokenizer files give the character ids too (what the official package would read)
    from transformers import AutoTokenizer
    hf = AutoTokenizer.from_pretrained(str(folder))
    text = "hello world, 你好"
    assert hf.encode(text, add_special_tokens=False) == model.encode_text(text)
    with pytest.raises(FileExistsError, match="not empty"):
        models.export(loaded, folder)


def test_ablation_export_needs_official_false(tmp_path):
    torch.manual_seed(0)
    kwargs = {k: v for k, v in from_official_config(small_official_config()).items() if k != "_target_"}
    bb = VoxCPMBackbone(**{**kwargs, "residual_input_e": False})
    m = TTSModel(bb, AudioVAE(**SMALL_VAE), CharTokenizer(CHARS))
    with pytest.raises(ValueError, match="residual_input_e"):
        models.export(m, tmp_path / "a")
    folder = models.export(m, tmp_path / "b", official=False)
    assert not (folder / "config.json").exists()
    ref = m.synthesize_batch(["a b"], temperature=0, max_len=6)[0].wav
    again = models.load(folder, optimize=False)
    assert torch.equal(again.synthesize_batch(["a b"], temperature=0, max_len=6)[0].wav, ref)


def test_load_errors_name_the_problem(model, tmp_path):
    with pytest.raises(ModelPathError, match="no such file or folder.*MODEL accepts.*Lightning checkpoint"):
        models.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelPathError, match="neither config.json nor checkpoints/last.ckpt.*MODEL accepts"):
        models.load(tmp_path / "empty")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ModelPathError, match="not a Lightning checkpoint.*MODEL accepts"):
        models.load(tmp_path / "x.txt")
    (tmp_path / "bad.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="weights_only"):  # unreadable: the one error type
        models.load(tmp_path / "bad.ckpt")
    # wrong keys: both the missing and the unexpected ones are listed
    path = lightning_checkpoint(model, tmp_path / "keys.ckpt")
    ckpt = torch.load(path, weights_only=True)
    ckpt["state_dict"]["model.stop_head.extra"] = torch.zeros(1)
    del ckpt["state_dict"]["model.stop_proj.bias"]
    torch.save(ckpt, path)
    with pytest.raises(WeightsError, match=r"(?s)missing 1: stop_proj.bias.*unexpected 1: stop_head.extra"):
        models.load(path)
    folder = models.export(model, tmp_path / "exp")
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelPathError, match="no backbone weights"):
        models.load(folder)


def test_prompt_latents_are_kept_until_the_file_or_the_vae_changes(tmp_path, monkeypatch):
    import os

    model = make_model()  # its VAE's weights are changed below
    wav = tmp_path / "p.wav"
    sf.write(wav, (np.random.default_rng(1).standard_normal(400) * 0.1).astype(np.float32), 16000)
    calls = []
    encode = model.vae.encode
    monkeypatch.setattr(model.vae, "encode", lambda x, *a: calls.append(1) or encode(x, *a))
    with torch.inference_mode():
        first = model.prompt_patches(str(wav))
        assert torch.equal(model.prompt_patches(wav), first) and len(calls) == 1  # kept
        sf.write(wav, (np.random.default_rng(2).standard_normal(400) * 0.1).astype(np.float32), 16000)
        os.utime(wav, ns=(1, 1))  # an edited file: another mtime
        changed = model.prompt_patches(str(wav))
        assert len(calls) == 2 and not torch.equal(changed, first)
    with torch.no_grad():  # any change to the VAE's weights
        next(model.vae.encoder.parameters()).add_(0.5)
    with torch.inference_mode():
        model.prompt_patches(str(wav))
    assert len(calls) == 3
    with pytest.raises(ValueError, match="missing.wav: cannot read audio"):
        model.prompt_patches(str(tmp_path / "missing.wav"))


def test_generation_input_errors(model, tmp_path, prompt_wav):
    with pytest.raises(ValueError, match="text is empty"):
        model.generate("  ")
    with pytest.raises(ValueError, match="needs its prompt text"):
        model.generate("hello", prompt_wav=prompt_wav)
    with pytest.raises(ValueError, match="needs its prompt wav"):
        model.generate("hello", prompt_text="hi")
    (tmp_path / "broken.wav").write_bytes(b"RIFF....")
    with pytest.raises(ValueError, match="broken.wav: cannot read audio"):
        model.generate("hello", prompt_wav=str(tmp_path / "broken.wav"), prompt_text="hi")


def test_synth_cli(model, tmp_path, prompt_wav, capsys):
    from voxlab.cli.synth import main

    folder = models.export(model, tmp_path / "m")
    out = tmp_path / "out.wav"
    assert main(["--model", str(folder), "--text", "hello world", "--out", str(out), "--prompt-wav", prompt_wav,
                 "--prompt-text", "we test", "--seed", "0", "--max-len", "20"]) == 0
    printed = capsys.readouterr().out
    wav, sr = sf.read(out)
    assert sr == 16000 and len(wav) > 0
    assert f"{len(wav) / sr:.2f} s of audio" in printed and "real-time factor" in printed
    cases = [(["--text", " "], "TEXT is empty"),
             (["--text", "hi", "--prompt-wav", prompt_wav], "needs PROMPT_TEXT"),
             (["--text", "hi", "--prompt-text", "x"], "PROMPT_TEXT needs PROMPT_WAV"),
             (["--text", "hi", "--prompt-wav", str(tmp_path / "none.wav"), "--prompt-text", "x"], "no such file"),
             (["--text", "hi", "--model", str(tmp_path / "none")], "MODEL accepts"),
             (["--text", "hi", "--model", ""], "MODEL is empty")]
    (tmp_path / "broken.wav").write_bytes(b"RIFF....")
    cases.append((["--text", "hi", "--prompt-wav", str(tmp_path / "broken.wav"), "--prompt-text", "x"],
                  "cannot read audio"))
    for args, message in cases:
        argv = ["--model", str(folder), "--out", str(tmp_path / "e.wav")] + args
        assert main(argv) == 2, args
        assert message in capsys.readouterr().err, args


def test_retry_badcase_batched_equals_one_by_one(model, prompt_wav):
    """Only the bad cases of a batch run again, each with its own noise going on: as if one by one."""
    wavs, ptexts = [None, prompt_wav, None, None], [None, "we test", None, None]
    kw = dict(temperature=1.0, retry_badcase=True, retry_badcase_ratio_threshold=1.0)
    batched = model.synthesize_batch(TEXTS, wavs, ptexts, seed=0, **kw)
    assert {b.attempts for b in batched} == {1, 3}  # some good at once, some bad every time
    for i, b in enumerate(batched):
        one = model.synthesize_batch([TEXTS[i]], [wavs[i]], [ptexts[i]], seed=i, **kw)[0]
        assert (one.attempts, one.patches.shape[0]) == (b.attempts, b.patches.shape[0])
        close(b.patches, one.patches)
