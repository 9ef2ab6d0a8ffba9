"""LoRA in the official format, against the official `voxcpm` package (2.0.3): our adapter loads into
the official `VoxCPMModel.load_lora_weights` (and `VoxCPM(..., lora_weights_path=...)`) with no
skipped key and generates what we generate; the official trainer's adapter loads into ours; off =
the base model; merged = the adapter's output, and the merged export is a plain official folder."""
from __future__ import annotations

import json

import pytest
import torch

import models
from models.lora import (AdapterError, adapter_state_dict, apply_lora, load_adapter, lora_layers, merge_lora,
                         save_adapter, set_lora_enabled)
from models.official_reference import (build_official, import_official, small_official_config, tiny_tokenizer,
                                       write_official_folder)
from test_inference import tune_stop
from test_inference_parity import close, official_generate

pytest.importorskip("voxcpm")
TEXT = "hello world, this is a test"
ALL_ON = {"enable_lm": True, "enable_dit": True, "enable_proj": True, "r": 4, "alpha": 8}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    off = build_official(small_official_config(), seed=0, tokenizer=tiny_tokenizer())
    with torch.no_grad():
        tune_stop(off, bias=0.30, direction_seed=6)
    root = tmp_path_factory.mktemp("lora")
    return write_official_folder(off, root / "official")


def randomize(module, seed):
    """Adapters off their zero start (B = 0 would make every check pass trivially)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "lora_" in name:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


def official_with(folder, cfg):
    off = import_official()
    from voxcpm.model.voxcpm import LoRAConfig
    return off.VoxCPMModel.from_local(str(folder), optimize=False, device="cpu", lora_config=LoRAConfig(**cfg))


def ours_latents(model, max_len=40):
    return model.synthesize_batch([TEXT], temperature=0.0, max_len=max_len)[0].patches


@pytest.mark.parametrize("cfg", [{}, ALL_ON], ids=["official_default", "lm_dit_proj"])
def test_our_adapter_loads_into_the_official_model(folder, tmp_path, cfg):
    ours = models.load(folder, optimize=False)
    apply_lora(ours.backbone, {"enable_lm": True, "enable_dit": True, **cfg})
    randomize(ours.backbone, 1)
    adapter = save_adapter(ours.backbone, tmp_path / "adapter", base_model=folder)
    saved = json.loads((adapter / "lora_config.json").read_text())
    assert saved["base_model"] == str(folder) and saved["lora_config"]["r"] == cfg.get("r", 8)

    off = official_with(folder, saved["lora_config"])
    loaded, skipped = off.load_lora_weights(str(adapter), device="cpu")
    assert skipped == [] and sorted(loaded) == sorted(adapter_state_dict(ours.backbone))
    _, ref = official_generate(off, TEXT, max_len=40)
    close(ours_latents(ours), ref, "latents with the adapter")


def test_the_official_loader_default_reads_our_default_adapter(folder, tmp_path, monkeypatch):
    """`VoxCPM(path, lora_weights_path=...)` with no LoRAConfig builds LM + DiT adapters, r 8, alpha 16:
    the config of `finetune_lora`."""
    import_official()
    import voxcpm.core as core
    from omegaconf import OmegaConf

    from voxlab.config import compose

    ours = models.load(folder, optimize=False)
    apply_lora(ours.backbone, OmegaConf.to_container(compose("finetune_lora").model.lora))
    randomize(ours.backbone, 2)
    adapter = save_adapter(ours.backbone, tmp_path / "adapter")
    calls = []
    original = core.VoxCPMModel.load_lora_weights
    monkeypatch.setattr(core.VoxCPMModel, "load_lora_weights",
                        lambda self, p, device=None: calls.append(original(self, p, device)) or calls[-1])
    tts = core.VoxCPM(str(folder), zipenhancer_model_path=None, enable_denoiser=False, optimize=False, device="cpu",
                      lora_weights_path=str(adapter))
    loaded, skipped = calls[0]
    assert skipped == [] and len(loaded) == len(adapter_state_dict(ours.backbone))
    _, ref = official_generate(tts.tts_model, TEXT, max_len=40)
    close(ours_latents(ours), ref, "latents with the adapter")


def test_official_adapter_into_ours_enable_disable_merge(folder, tmp_path):
    from safetensors.torch import save_file

    off = official_with(folder, ALL_ON)
    randomize(off, 3)
    adapter = tmp_path / "official_adapter"  # what the official trainer's save_checkpoint writes
    adapter.mkdir()
    save_file({k: v.contiguous() for k, v in off.state_dict().items() if "lora_" in k},
              str(adapter / "lora_weights.safetensors"))
    (adapter / "lora_config.json").write_text(json.dumps({"base_model": str(folder),
                                                          "lora_config": off.lora_config.model_dump()}))
    _, ref = official_generate(off, TEXT, max_len=40)
    ours = models.load(folder, optimize=False, lora=adapter)
    with_adapter = ours_latents(ours)
    close(with_adapter, ref, "latents with the official adapter")

    set_lora_enabled(ours.backbone, False)  # off: the base model exactly
    base = models.load(folder, optimize=False)
    base_latents = ours_latents(base)
    assert with_adapter.shape != base_latents.shape or (with_adapter - base_latents).abs().max() > 1e-2
    close(ours_latents(ours), base_latents, "adapter disabled vs base")
    off.set_lora_enabled(False)
    _, ref_off = official_generate(off, TEXT, max_len=40)
    close(ours_latents(ours), ref_off, "disabled, ours vs official")
    set_lora_enabled(ours.backbone, True)

    models.export(ours, tmp_path / "merged")  # merged into the base weights, official layout
    merged = models.load(tmp_path / "merged", optimize=False)
    assert not lora_layers(merged.backbone)
    close(ours_latents(merged), with_adapter, "merged export vs adapter")
    plain = import_official().VoxCPMModel.from_local(str(tmp_path / "merged"), optimize=False, device="cpu")
    _, ref_merged = official_generate(plain, TEXT, max_len=40)
    close(ref_merged, ref, "the official package on the merged export")
    in_place = merge_lora(ours.backbone)
    assert in_place.config["lora"] is None and all(p.requires_grad for p in in_place.parameters())


def test_only_adapters_train_and_a_wrong_adapter_is_refused(folder, tmp_path):
    ours = models.load(folder, optimize=False)
    apply_lora(ours.backbone, {"enable_lm": True, "r": 2})
    trainable = {n for n, p in ours.backbone.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith(("lora_A", "lora_B")) for n in trainable)
    assert any(n.startswith("residual_lm.") for n in trainable)  # enable_lm: TSLM and RALM
    assert not any(n.startswith("feat_decoder.") for n in trainable)
    adapter = save_adapter(ours.backbone, tmp_path / "lm_only")
    other = models.load(folder, optimize=False)
    apply_lora(other.backbone, {"enable_lm": True, "enable_dit": True, "r": 2})
    with pytest.raises(AdapterError, match=r"LoRA parameters get no value.*feat_decoder"):
        load_adapter(other.backbone, adapter)
    with pytest.raises(AdapterError, match="no lora_weights.safetensors"):
        load_adapter(other.backbone, tmp_path)
