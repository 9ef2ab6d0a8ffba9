"""Test helper: build the official `voxcpm` package's model offline (random weights).

The package imports torchaudio at module level; absent heavy modules get an empty stand-in (with
a `__spec__`, so importlib checks pass); torchaudio's has `load` (soundfile), which the official
prompt cache calls. Only code paths that touch nothing else of them are used here.

- `import_official()` -> namespace with VoxCPMModel, VoxCPMConfig, AudioVAE, AudioVAEConfig.
- `tiny_tokenizer()` -> a LlamaTokenizerFast built offline (Metaspace BPE over ASCII + a few
  Chinese characters, with multi-character Chinese tokens; ids < 128 reserved so 101/102 are free).
- `small_official_config(**over)` / `official_0_5b_config()` / `official_voxcpm2_release_config()` -> config.json dicts.
- `build_official(config, vae_config=None, seed=0)` -> an fp32 CPU VoxCPMModel in eval mode.
- `write_official_folder(model, folder, vae_config=None)` -> the release layout of that model (config.json,
  model.safetensors, audiovae.pth, tokenizer files), which the official `from_local` reads.
- VoxCPM2: `import_official_v2()` (VoxCPM2Model, VoxCPMConfig, AudioVAEV2, AudioVAEConfigV2),
  `small_official_v2_config(**over)`, `build_official_v2(config, vae_config=None, seed=0)` (a small
  AudioVAE V2, `SMALL_VAE_V2`, 16 kHz in, 48 kHz out); `write_official_folder` writes either.
- `python -m models.official_reference OUT [--vae FOLDER]`: a small random official folder (with the
  AudioVAE of FOLDER, e.g. assets/tiny_audiovae) to try `make finetune` on.
"""
from __future__ import annotations

import copy
import importlib.machinery
import importlib.util
import sys
import types

import torch

STUBBED = ("torchaudio",)

SMALL_VAE = {"encoder_dim": 4, "encoder_rates": [2, 5], "latent_dim": 8, "decoder_dim": 8,
             "decoder_rates": [5, 2], "sample_rate": 16000}

# the AudioVAE V2: hop 10 at 16 kHz in, 30 output samples per latent frame (48 kHz out)
SMALL_VAE_V2 = {"encoder_dim": 4, "encoder_rates": [2, 5], "latent_dim": 8, "decoder_dim": 8, "decoder_rates": [5, 3, 2],
                "sample_rate": 16000, "out_sample_rate": 48000, "cond_dim": 8}


def install_stubs() -> None:
    for name in STUBBED:
        if name in sys.modules:
            continue
        try:
            if importlib.util.find_spec(name) is not None:
                continue
        except (ImportError, ValueError):
            pass
        mod = types.ModuleType(name)
        mod.__spec__ = importlib.machinery.ModuleSpec(name, None)
        if name == "torchaudio":  # the official prompt cache reads the prompt wav with torchaudio.load
            mod.load = _soundfile_load
        sys.modules[name] = mod


def _soundfile_load(path) -> tuple[torch.Tensor, int]:
    """torchaudio.load's result ([channels, samples] float32, rate), read with soundfile."""
    import soundfile as sf

    x, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return torch.from_numpy(x.T.copy()), rate


def import_official() -> types.SimpleNamespace:
    install_stubs()
    from voxcpm.model.voxcpm import VoxCPMConfig, VoxCPMModel
    from voxcpm.modules.audiovae import AudioVAE, AudioVAEConfig
    return types.SimpleNamespace(VoxCPMModel=VoxCPMModel, VoxCPMConfig=VoxCPMConfig, AudioVAE=AudioVAE,
                                 AudioVAEConfig=AudioVAEConfig)


def import_official_v2() -> types.SimpleNamespace:
    install_stubs()
    from voxcpm.model.voxcpm2 import VoxCPM2Model, VoxCPMConfig
    from voxcpm.modules.audiovae import AudioVAEConfigV2, AudioVAEV2
    return types.SimpleNamespace(VoxCPM2Model=VoxCPM2Model, VoxCPMConfig=VoxCPMConfig, AudioVAEV2=AudioVAEV2,
                                 AudioVAEConfigV2=AudioVAEConfigV2)


def small_official_v2_config(**over) -> dict:
    """The small config as VoxCPM2 (patch 4, RALM without RoPE); `over` changes any of it."""
    return _deep_update(small_official_config(architecture="voxcpm2", patch_size=4, residual_lm_no_rope=True), over)


def build_official_v2(config: dict, vae_config: dict | None = None, seed: int = 0, tokenizer=None):
    """An official VoxCPM2Model with random weights: fp32, CPU, eval mode."""
    off = import_official_v2()
    torch.manual_seed(seed)
    cfg = off.VoxCPMConfig.model_validate({**config, "device": "cpu", "dtype": "float32"})
    vae_cfg = {**SMALL_VAE_V2, "latent_dim": config.get("feat_dim", 64)} if vae_config is None else vae_config
    vae = off.AudioVAEV2(off.AudioVAEConfigV2(**vae_cfg))
    model = off.VoxCPM2Model(cfg, tokenizer or tiny_tokenizer(), vae, device="cpu")
    return model.float().eval()


def tiny_tokenizer():
    """A small Llama-style fast tokenizer, no download. Vocabulary < 256 ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for i in range(3, 128):
        vocab[f"<reserved_{i}>"] = i
    chars = list("▁abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'-")
    chars += list("你好世界我们是中文语音合成测试的")
    merges = [("你", "好"), ("世", "界"), ("我", "们"), ("语", "音")]
    for c in chars:
        vocab.setdefault(c, len(vocab))
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    return LlamaTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def _rope(head_dim: int, max_pos: int, original: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    n = head_dim // 2
    short = (1.0 + torch.rand(n, generator=g)).tolist()
    long = (1.0 + 4 * torch.rand(n, generator=g)).tolist()
    return {"type": "longrope", "short_factor": short, "long_factor": long, "original_max_position_embeddings": original}


def small_official_config(**over) -> dict:
    """A tiny but complete official config (LongRoPE with non-trivial factors, muP on)."""
    cfg = {
        "architecture": "voxcpm",
        "lm_config": {
            "bos_token_id": 1, "eos_token_id": 2, "hidden_size": 32, "intermediate_size": 64,
            "max_position_embeddings": 256, "num_attention_heads": 4, "num_key_value_heads": 2,
            "num_hidden_layers": 2, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
            "rope_scaling": _rope(8, 256, 128), "vocab_size": 256, "use_mup": True,
            "scale_emb": 12, "dim_model_base": 16, "scale_depth": 1.4,
        },
        "patch_size": 2, "feat_dim": 8, "residual_lm_num_layers": 2,
        "scalar_quantization_latent_dim": 16, "scalar_quantization_scale": 9,
        # LongRoPE factors are per head dim, so every stack keeps head dim 8 (kv_channels in LocEnc)
        "encoder_config": {"hidden_dim": 24, "ffn_dim": 48, "num_heads": 4, "num_layers": 2, "kv_channels": 8},
        "dit_config": {"hidden_dim": 16, "ffn_dim": 32, "num_heads": 2, "num_layers": 2,
                       "cfm_config": {"sigma_min": 1e-06, "solver": "euler", "t_scheduler": "log-norm",
                                      "inference_cfg_rate": 2.0}},
        "max_length": 256, "device": "cpu", "dtype": "float32",
    }
    return _deep_update(cfg, over)


def official_0_5b_config() -> dict:
    """The VoxCPM-0.5B architecture (docs/design.md section 3). RoPE factors here are placeholders (ones):
    they do not change parameter counts; the release's config.json carries the real ones."""
    return {
        "architecture": "voxcpm",
        "lm_config": {
            "bos_token_id": 1, "eos_token_id": 2, "hidden_size": 1024, "intermediate_size": 4096,
            "max_position_embeddings": 32768, "num_attention_heads": 16, "num_key_value_heads": 2,
            "num_hidden_layers": 24, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
            "rope_scaling": {"type": "longrope", "short_factor": [1.0] * 32, "long_factor": [1.0] * 32,
                             "original_max_position_embeddings": 32768},
            "vocab_size": 73448, "use_mup": False, "scale_emb": 12, "dim_model_base": 256, "scale_depth": 1.4,
        },
        "patch_size": 2, "feat_dim": 64, "residual_lm_num_layers": 6,
        "scalar_quantization_latent_dim": 256, "scalar_quantization_scale": 9,
        "encoder_config": {"hidden_dim": 1024, "ffn_dim": 4096, "num_heads": 16, "num_layers": 4},
        "dit_config": {"hidden_dim": 1024, "ffn_dim": 4096, "num_heads": 16, "num_layers": 4,
                       "cfm_config": {"sigma_min": 1e-06, "solver": "euler", "t_scheduler": "log-norm",
                                      "inference_cfg_rate": 2.0}},
        "max_length": 4096, "device": "cuda", "dtype": "bfloat16",
    }


def official_voxcpm2_release_config() -> dict:
    """The VoxCPM2 release's architecture (its config.json: 2B, TSLM 28 x 2048, 128-wide heads, RALM 8
    layers without RoPE, LocEnc / LocDiT 12 layers, FSQ 512, patch 4). RoPE factors are placeholders."""
    over = {"lm_config": {"hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 28, "kv_channels": 128,
                          "rope_scaling": {"type": "longrope", "short_factor": [1.0] * 64, "long_factor": [1.0] * 64,
                                           "original_max_position_embeddings": 32768}},
            "encoder_config": {"num_layers": 12, "kv_channels": 128},
            "dit_config": {"num_layers": 12, "kv_channels": 128}}
    return _deep_update(official_0_5b_config(), {
        **over, "architecture": "voxcpm2", "patch_size": 4, "residual_lm_num_layers": 8, "residual_lm_no_rope": True,
        "scalar_quantization_latent_dim": 512, "max_length": 8192})


def _deep_update(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def build_official(config: dict, vae_config: dict | None = None, seed: int = 0, tokenizer=None):
    """An official VoxCPMModel with random weights: fp32, CPU, eval mode."""
    off = import_official()
    torch.manual_seed(seed)
    cfg = off.VoxCPMConfig.model_validate({**config, "device": "cpu", "dtype": "float32"})
    vae = off.AudioVAE(off.AudioVAEConfig(**(SMALL_VAE if vae_config is None else vae_config)))
    model = off.VoxCPMModel(cfg, tokenizer or tiny_tokenizer(), vae, device="cpu")
    return model.float().eval()


def backbone_state_dict(model) -> dict:
    """The official model's state dict without the AudioVAE (what `model.safetensors` holds)."""
    return {k: v for k, v in model.state_dict().items() if not k.startswith("audio_vae.")}


def write_official_folder(model, folder, vae_config: dict | None = None) -> "Path":
    """`model` (an official VoxCPMModel built with `vae_config`, default SMALL_VAE; or a VoxCPM2Model,
    default SMALL_VAE_V2 at its latent size) saved as a release folder."""
    import json
    from pathlib import Path

    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    v2 = hasattr(model, "fusion_concat_proj")
    if vae_config is None:
        vae_config = {**SMALL_VAE_V2, "latent_dim": model.feat_dim} if v2 else SMALL_VAE
    config = {"architecture": "voxcpm2" if v2 else "voxcpm", **model.config.model_dump(),
              "audio_vae_config": dict(vae_config)}
    for block in (config["lm_config"], config["encoder_config"], config["dit_config"]):
        if block.get("kv_channels") is None:  # the official schema reads no null here (its own dump writes one)
            block.pop("kv_channels", None)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    save_file({k: v.contiguous() for k, v in backbone_state_dict(model).items()}, str(folder / "model.safetensors"))
    vae = {k[len("audio_vae."):]: v for k, v in model.state_dict().items() if k.startswith("audio_vae.")}
    torch.save({"state_dict": vae}, folder / "audiovae.pth")
    model.text_tokenizer.tokenizer.save_pretrained(str(folder))
    return folder


def main(argv=None) -> int:
    import argparse
    import json
    from pathlib import Path

    parser = argparse.ArgumentParser(description="Write a small random official VoxCPM folder (for trying make finetune).")
    parser.add_argument("out")
    parser.add_argument("--vae", default=None, help="an AudioVAE export folder (audiovae.pth + audiovae_config.json)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        parser.error(f"{out} exists and is not empty: choose a new folder")
    vae_config = None
    if args.vae:
        vae_config = json.loads((Path(args.vae) / "audiovae_config.json").read_text())
    config = small_official_config(feat_dim=(vae_config or SMALL_VAE)["latent_dim"])
    model = build_official(config, vae_config, seed=args.seed)
    if args.vae:
        state = torch.load(Path(args.vae) / "audiovae.pth", map_location="cpu", weights_only=True)
        model.audio_vae.load_state_dict(state.get("state_dict", state))
    print(write_official_folder(model, out, vae_config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
