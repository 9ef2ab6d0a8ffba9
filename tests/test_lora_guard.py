"""LoRA mistakes that used to pass in silence (models/lora.py): target names that match nothing in one
part warn naming the part and the names; an adapter loaded onto a model whose base weights are not
the ones it was trained on is refused in one line (warned when the adapter records no fingerprint)."""
from __future__ import annotations

import json
import warnings

import pytest
import torch

from models.lora import AdapterError, LoRAWarning, apply_lora, load_adapter, merge_lora, save_adapter
from models.voxcpm import VoxCPMBackbone


def backbone(seed: int) -> VoxCPMBackbone:
    torch.manual_seed(seed)
    lm = {"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4,
          "num_key_value_heads": 2, "num_hidden_layers": 1, "max_position_embeddings": 128}
    local = {"hidden_dim": 16, "ffn_dim": 32, "num_heads": 2, "num_layers": 1}
    return VoxCPMBackbone(lm=lm, encoder=local, dit=local, feat_dim=8, residual_lm_layers=1)


@pytest.mark.parametrize("lora, key, part, names", [
    ({"enable_lm": True, "target_modules_lm": ["q_prj", "k_proj"]}, "target_modules_lm", "LM", ["q_prj"]),
    ({"enable_lm": True, "enable_dit": True, "target_modules_dit": ["qproj", "v_porj"]},
     "target_modules_dit", "LocDiT", ["qproj", "v_porj"]),  # the DiT gets nothing, the LM its adapters
    ({"enable_proj": True, "target_proj_modules": ["lm_to_dit", "enc_to_lm_proj"]},
     "target_proj_modules", "projections", ["lm_to_dit"])])
def test_target_names_matching_nothing_in_one_part_warn_naming_part_and_names(lora, key, part, names):
    with pytest.warns(LoRAWarning) as got:
        apply_lora(backbone(0), {"r": 2, **lora})
    text = " ".join(str(w.message) for w in got)
    assert f"model.lora.{key}" in text and part in text and all(repr(n) in text for n in names)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LoRAWarning)  # correct names: no warning
        apply_lora(backbone(0), {"enable_lm": True, "enable_dit": True, "enable_proj": True, "r": 2})


def trained_adapter(tmp_path, base: VoxCPMBackbone):
    apply_lora(base, {"enable_lm": True, "enable_dit": True, "r": 2})
    with torch.no_grad():
        for name, p in base.named_parameters():
            if "lora_B" in name:
                p.normal_()
    return save_adapter(base, tmp_path / "adapter", base_model="runs/base")


def finetuned(seed: int) -> VoxCPMBackbone:
    """The base after a merged LoRA fine-tune: same size and names, its attention weights moved."""
    model = backbone(seed)
    apply_lora(model, {"enable_lm": True, "r": 2})
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_()
    return merge_lora(model)


@pytest.mark.parametrize("other", [lambda: backbone(1), lambda: finetuned(0)], ids=["another_seed", "finetuned_base"])
@pytest.mark.parametrize("as_file", [False, True], ids=["folder", "weights_file"])
def test_an_adapter_on_a_model_whose_base_differs_is_refused_in_one_line(tmp_path, other, as_file):
    adapter = trained_adapter(tmp_path, backbone(0))
    target = adapter / "lora_weights.safetensors" if as_file else adapter
    with pytest.raises(AdapterError) as err:
        load_adapter(other(), target)
    message = str(err.value)
    assert "\n" not in message and str(adapter / "lora_config.json") in message and "'runs/base'" in message
    # its own base loads it, also as a bf16 copy (what an official folder may hold)
    load_adapter(backbone(0), target)
    load_adapter(backbone(0).to(torch.bfloat16).float(), target)


def test_an_adapter_without_a_base_fingerprint_warns_naming_its_base_model(tmp_path):
    adapter = trained_adapter(tmp_path, backbone(0))
    info = json.loads((adapter / "lora_config.json").read_text())
    del info["base_fingerprint"]  # what the official trainer writes
    (adapter / "lora_config.json").write_text(json.dumps(info))
    with pytest.warns(LoRAWarning, match=r"base_model 'runs/base' but no base_fingerprint"):
        load_adapter(backbone(1), adapter)
