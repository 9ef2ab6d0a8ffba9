"""Fine-tuning parity with the official training code (voxcpm 2.0.3 and scripts/train_voxcpm_finetune.py):
on a tiny random official folder of each architecture (VoxCPMModel, VoxCPM2Model: LoRA on its projections
takes `fusion_concat_proj` too, as the official VoxCPM2 LoRAConfig), the same batch (packed by the official packer and by ours) and the same
random draws (the official loss's draws recorded and handed to ours), our loss equals the official
`VoxCPMModel.forward` loss (loss/diff + loss/stop, the official lambdas) within 1e-5, the gradients
agree, and one AdamW step moves the same parameters the same way (LoRA: only the adapter). Where the
step differs by design (weight decay on norms and biases, docs/design.md section 10) the difference
is exactly that decay."""
from __future__ import annotations

import json
import types

import pytest
import torch

from lightning_modules.tts import TERMS, TTSModule
from models.official_reference import (build_official, build_official_v2, install_stubs, small_official_config,
                                       small_official_v2_config, write_official_folder)
from models.packing import collate_packed, pack_utterance, pack_with_reference
from models.weights import load_strict
from test_lora import randomize
from test_official_manifest import official_packer_module
from voxlab.cli.init_model import resolve_init
from voxlab.config import compose

install_stubs()
pytest.importorskip("voxcpm")
LORA = {"enable_lm": True, "enable_dit": True, "enable_proj": True, "r": 4, "alpha": 8}
# the official loss's draws, in call order (voxcpm/modules/locdit/unified_cfm.py compute_loss, sample_r_t)
OFFICIAL_DRAWS = ["rand", "rand", "randn_like", "randn", "randn", "rand", "randn_like"]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module", params=["voxcpm", "voxcpm2"])
def folder(request, tmp_path_factory):
    """A tiny random official folder of each architecture (VoxCPM2: patch 3, the LocDiT wider than the LM)."""
    if request.param == "voxcpm2":
        off = build_official_v2(small_official_v2_config(patch_size=3, dit_config={"hidden_dim": 40, "kv_channels": 8}), seed=0)
    else:
        off = build_official(small_official_config(), seed=0)
    return write_official_folder(off, tmp_path_factory.mktemp("ft_parity") / request.param)


def items(patch: int, dim: int):
    """Three utterances (text ids, target latents, reference latents or None) of different lengths."""
    g = torch.Generator().manual_seed(5)
    def lat(n):
        return torch.randn(n * patch, dim, generator=g)
    return [([5, 9, 14, 20], lat(3), None), ([7, 8], lat(5), lat(2)), ([30, 31, 32, 33, 34, 35], lat(2), None)]


def batches(patch: int, dim: int):
    """(ours, official): ours packed by models.packing, the official by its packer's per-item functions
    (latents handed in directly in place of its VAE encode), padded as its __call__ pads (zeros)."""
    vae = types.SimpleNamespace(hop_length=1, sample_rate=16000)  # never encodes: latents are handed in
    packer = official_packer_module().AudioFeatureProcessingPacker(1, 4096, patch, dim, vae)
    packer.extract_audio_feats = lambda lat: (lat.reshape(1, -1, patch, dim), lat.shape[0] / 25)
    ours, theirs = [], []
    for text, lat, ref in items(patch, dim):
        ids = torch.tensor(text, dtype=torch.int32)
        if ref is None:
            ours.append(pack_utterance(text, lat, patch_size=patch))
            theirs.append(packer.process_tts_data(lat, ids)[:6])
        else:
            ours.append(pack_with_reference(text, lat, ref, patch_size=patch))
            theirs.append(packer.process_tts_data_with_ref(ref, lat, ids)[:6])
    s = max(len(t[0]) for t in theirs)
    def pad(x):
        return torch.cat([x, x.new_zeros((s - len(x), *x.shape[1:]))])
    names = ("text_tokens", "audio_feats", "text_mask", "audio_mask", "loss_mask", "labels")
    official = {n: torch.stack([pad(t[i]) for t in theirs]) for i, n in enumerate(names)}
    official["position_ids"] = torch.zeros_like(official["text_tokens"])  # unused by the official forward
    return collate_packed(ours), official


def official_trainer_model(folder, lora):
    """The model as scripts/train_voxcpm_finetune.py builds it: from_local(training=True), VAE deleted, train()
    (VoxCPMModel or VoxCPM2Model, with that architecture's LoRAConfig, as the folder's config.json says)."""
    if json.loads((folder / "config.json").read_text())["architecture"] == "voxcpm2":
        from voxcpm.model.voxcpm2 import LoRAConfig, VoxCPM2Model as Model
    else:
        from voxcpm.model.voxcpm import LoRAConfig, VoxCPMModel as Model
    model = Model.from_local(str(folder), optimize=False, training=True,
                             lora_config=LoRAConfig(**lora) if lora else None)
    del model.audio_vae
    return model.train()


def our_module(folder, exp, lora, *extra):
    overrides = [f"init.model={folder}", "data.train_manifest=unused.jsonl", *extra]
    overrides += [f"model.lora.{k}={v}" for k, v in (lora or {}).items()]
    module = TTSModule(resolve_init(compose(exp, None, overrides)))
    module._trainer = types.SimpleNamespace(max_steps=2000)  # configure_optimizers reads the step count
    return module.train()


def recorded_official_loss(model, batch, monkeypatch):
    """The official forward's weighted loss and its draws: (loss, t, noise [rows, P, D], cfg_keep), rows = B*T."""
    calls, times = [], []
    real_sample = model.feat_decoder.sample_r_t
    with monkeypatch.context() as m:
        for name in ("rand", "randn", "randn_like"):
            def record(*a, _real=getattr(torch, name), _name=name, **k):
                out = _real(*a, **k)
                calls.append((_name, out))
                return out
            m.setattr(torch, name, record)
        m.setattr(model.feat_decoder, "sample_r_t", lambda *a, **k: times.append(real_sample(*a, **k)) or times[-1])
        out = model(batch["text_tokens"], batch["text_mask"], batch["audio_feats"], batch["audio_mask"],
                    batch["loss_mask"], batch["position_ids"], batch["labels"], progress=0.0)
    assert [c[0] for c in calls] == OFFICIAL_DRAWS, "the official loss draws differently than this test knows"
    loss = sum(1.0 * v for k, v in out.items() if k.startswith("loss/"))  # the official lambdas: 1.0 each
    cfg_keep = calls[0][1] > model.feat_decoder.training_cfg_rate
    return loss, out, times[0][1], calls[-1][1].transpose(1, 2), cfg_keep


def our_loss(module, batch, t, noise, cfg_keep):
    raw = module.model(batch, t=t, noise=noise, cfg_keep=cfg_keep)
    terms = {name: raw[key] for name, key in TERMS.items() if key in raw}  # align: only when model.align is on
    return module.weighted_loss(terms), terms


@pytest.mark.parametrize("exp,lora", [("finetune_full", None), ("finetune_lora", LORA)], ids=["full", "lora"])
def test_loss_gradients_and_one_step_equal_the_official(folder, exp, lora, monkeypatch):
    torch.manual_seed(0)
    off = official_trainer_model(folder, lora)
    if lora:
        randomize(off, 1)  # B starts at zero: A would get no gradient, the adapter no effect
    ours = our_module(folder, exp, lora)
    load_strict(ours.model, off.state_dict(), "official trainer model")
    mine, theirs = batches(off.patch_size, off.feat_dim)
    for key, their_key in (("text_tokens", "text_tokens"), ("loss_mask", "loss_mask"), ("stop_labels", "labels"),
                           ("text_mask", "text_mask"), ("audio_mask", "audio_mask"), ("audio_feats", "audio_feats")):
        assert torch.equal(mine[key].to(theirs[their_key].dtype), theirs[their_key]), key

    loss_off, out, t, noise, keep = recorded_official_loss(off, theirs, monkeypatch)
    sel = theirs["loss_mask"].reshape(-1).bool()  # our target patches are the official rows in batch order
    assert 0 < int(keep[sel].sum()) < int(sel.sum()), "the recorded draws should drop some conditions, not all"
    loss_ours, terms = our_loss(ours, mine, t[sel], noise[sel], keep[sel])
    torch.testing.assert_close(terms["flow/loss"], out["loss/diff"], atol=1e-5, rtol=0)
    torch.testing.assert_close(terms["stop/loss"], out["loss/stop"], atol=1e-5, rtol=0)
    torch.testing.assert_close(loss_ours, loss_off, atol=1e-5, rtol=0)

    off_params = dict(off.named_parameters())
    our_params = dict(ours.model.named_parameters())
    trainable = sorted(n for n, p in our_params.items() if p.requires_grad)
    assert trainable == sorted(n for n, p in off_params.items() if p.requires_grad)
    assert all("lora_" in n for n in trainable) == bool(lora)
    loss_off.backward()
    loss_ours.backward()
    for name in trainable:
        g_off, g_ours = off_params[name].grad, our_params[name].grad
        assert (g_off is None) == (g_ours is None), name
        if g_off is not None:
            torch.testing.assert_close(g_ours, g_off, atol=1e-5, rtol=1e-4, msg=lambda m: f"{name}: {m}")

    optimizer = ours.configure_optimizers()["optimizer"]
    # one rate on both sides (the schedules differ by design: design.md section 10), large enough that
    # a step shows above float32 rounding of the weights
    lr, wd = 1e-2, ours.config.optim.weight_decay
    for group in optimizer.param_groups:
        group["lr"] = lr
    official_opt = torch.optim.AdamW((p for p in off.parameters() if p.requires_grad), lr=lr, weight_decay=wd)
    for name in trainable:  # the gradients agree (above); Adam's first step is about lr * sign(gradient), so an
        # element with a gradient near eps would magnify their rounding: both sides step on the official's
        if off_params[name].grad is not None:
            our_params[name].grad = off_params[name].grad.clone()
    before = {n: p.detach().clone() for n, p in our_params.items()}
    optimizer.step()
    official_opt.step()
    for name, p in our_params.items():
        moved_ours, moved_off = p.detach() - before[name], off_params[name].detach() - before[name]
        if name not in trainable:
            assert not moved_ours.any() and not moved_off.any(), f"{name} is frozen"
            continue
        assert moved_ours.abs().max() > 0, f"{name} did not move"
        if p.dim() < 2:  # ours decays no norm or bias; the official decays every trainable parameter
            moved_off = moved_off + lr * wd * before[name]
        torch.testing.assert_close(moved_ours, moved_off, atol=1e-3 * lr, rtol=0, msg=lambda m: f"{name}: {m}")


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(folder):
    """model.gradient_checkpointing=true recomputes the TSLM/RALM layers in backward: the same numbers."""
    plain = our_module(folder, "finetune_full", None)
    recomputing = our_module(folder, "finetune_full", None, "model.gradient_checkpointing=true")
    recomputing.model.load_state_dict(plain.model.state_dict())
    batch, _ = batches(plain.model.patch_size, plain.model.feat_dim)
    runs = []
    for module in (plain, recomputing):
        calls = []
        for lm in (module.model.base_lm, module.model.residual_lm):
            lm.layers[0].register_forward_pre_hook(lambda *_: calls.append(1))
        torch.manual_seed(3)  # the flow-matching draws, alike on both
        loss, _ = our_loss(module, batch, None, None, None)
        loss.backward()
        runs.append((loss.detach(), {n: p.grad for n, p in module.model.named_parameters() if p.grad is not None},
                     len(calls), module.model.base_lm.gradient_checkpointing))
    (loss_a, grads_a, calls_a, on_a), (loss_b, grads_b, calls_b, on_b) = runs
    assert (on_a, on_b) == (False, True) and (calls_a, calls_b) == (2, 4)  # recomputed: each LM layer starts twice (a pre-hook: the recompute may stop early)
    torch.testing.assert_close(loss_b, loss_a, atol=0, rtol=0)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) == len(list(plain.model.parameters()))
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], atol=1e-6, rtol=1e-5, msg=lambda m: f"{name}: {m}")
