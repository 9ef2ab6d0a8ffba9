"""Fine-tuning a small random official VoxCPM2 folder (built with the official package, at a size the
other tests do not use: LM width 40, patch 3, an AudioVAE V2 of hop 640 at 16 kHz decoding to 48 kHz),
as `make finetune MODEL=<folder> LORA=1` runs it, with adapters on the projections too
(`fusion_concat_proj` included, the official VoxCPM2 default): the official VoxCPM2 loader takes the
adapter with no skipped key, and the official model with it generates the latents of our run and of
its merged export (loaded by the official package) within 1e-4. Validation samples of a VoxCPM2
model are written at its output rate."""
from __future__ import annotations

import json
import types

import pytest
import soundfile as sf
import torch

import models
from callbacks.tts_samples import TTSSamplesCallback
from models.official_reference import (build_official_v2, import_official_v2, install_stubs, small_official_v2_config,
                                       write_official_folder)
from voxlab.checkpoint import load_checkpoint
from voxlab.cli.train import train

install_stubs()  # torchaudio stand-in before the package is imported
pytest.importorskip("voxcpm")
GEN_TOL = 1e-4
TEXT, MAX_LEN = "hello world", 6
# hop 640 (25 latent frames per second, as the release) so the corpus packs into short sequences
VAE_V2 = {"encoder_dim": 4, "encoder_rates": [2, 5, 8, 8], "latent_dim": 8, "decoder_dim": 16,
          "decoder_rates": [8, 8, 5, 6], "sample_rate": 16000, "out_sample_rate": 48000, "cond_dim": 8}
CONFIG = dict(patch_size=3, feat_dim=8, residual_lm_num_layers=1, scalar_quantization_latent_dim=20,
              lm_config={"hidden_size": 40, "intermediate_size": 80, "num_attention_heads": 5,
                         "num_key_value_heads": 1})


@pytest.fixture(scope="module")
def official_v2(tmp_path_factory):
    off = build_official_v2(small_official_v2_config(**CONFIG), VAE_V2, seed=3)
    return write_official_folder(off, tmp_path_factory.mktemp("finetune_v2") / "official", VAE_V2)


def official_model(folder, lora_config=None):
    from voxcpm.model.voxcpm2 import LoRAConfig

    cfg = None if lora_config is None else LoRAConfig(**lora_config)
    return import_official_v2().VoxCPM2Model.from_local(str(folder), optimize=False, device="cpu", lora_config=cfg)


def test_lora_on_voxcpm2_leaves_an_adapter_and_an_export_the_official_package_takes(tts_assets, official_v2):
    from test_v2_parity import close, official_latents

    root, corpus, _ = tts_assets
    run = train("finetune_lora", None, [
        f"init.model={official_v2}", f"data.train_manifest={corpus}/train.jsonl", f"data.val_manifest={corpus}/val.jsonl",
        f"run.root={root / 'finetune_v2_runs'}", "trainer.max_steps=2", "data.max_batch_size=8",
        "model.lora.enable_proj=true", "optim.schedule.name=constant", "optim.lr=1e-2"])  # a step that shows
    ckpt = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 2 and ckpt["nonfinite_skips"] == 0
    lora = {k[len("model."):] for k in ckpt["state_dict"] if k.endswith(("lora_A", "lora_B"))}
    assert {"fusion_concat_proj.lora_A", "fusion_concat_proj.lora_B", "enc_to_lm_proj.lora_A"} <= lora

    info = json.loads((run / "lora" / "last" / "lora_config.json").read_text())
    assert info["lora_config"]["target_proj_modules"][-1] == "fusion_concat_proj"
    off = official_model(official_v2, info["lora_config"])
    loaded, skipped = off.load_lora_weights(str(run / "lora" / "last"), device="cpu")
    assert skipped == [] and set(loaded) == lora
    ref = official_latents(off, TEXT, "zero_shot", max_len=MAX_LEN)
    off.set_lora_enabled(False)
    base = official_latents(off, TEXT, "zero_shot", max_len=MAX_LEN)
    assert (ref - base).abs().max() > 100 * GEN_TOL  # the adapter changes what is generated

    ours = models.load(run, optimize=False).synthesize_batch([TEXT], temperature=0.0, max_len=MAX_LEN)[0]
    close(ours.patches, ref, "latents: our LoRA run vs the official VoxCPM2 with its adapter", GEN_TOL)
    exported = official_model(run / "export")  # the adapters merged into the weights
    close(official_latents(exported, TEXT, "zero_shot", max_len=MAX_LEN), ref,
          "latents: the merged export in the official package vs the official model with the adapter", GEN_TOL)


def test_validation_samples_are_written_at_the_output_rate(official_v2, tmp_path):
    """The TTS samples callback logs and writes a VoxCPM2 model's audio at its VAE's output rate (48 kHz)."""
    model = models.load(official_v2)
    samples = TTSSamplesCallback(num_items=1, max_len=3, timesteps=2)
    samples.texts, samples.items = [TEXT], [torch.zeros(2, 3, 8)]
    trainer = types.SimpleNamespace(sanity_checking=False, is_global_zero=True, global_step=2, loggers=[],
                                    default_root_dir=str(tmp_path))
    module = torch.nn.Module()
    module.tts_model, module.device = (lambda: model), torch.device("cpu")
    samples.on_validation_epoch_end(trainer, module)
    for folder, most in (("ground_truth", 2 * 3 * 1920), ("step_000002", 3 * 3 * 1920)):  # patches x 3 frames x 1920
        wav, rate = sf.read(tmp_path / "samples" / folder / "item0.wav")
        assert rate == 48000 and 0 < len(wav) <= most, folder
