"""Fine-tuning a small random official VoxCPM folder (built with the official package): `init.model`
sets the architecture, weights, tokenizer and VAE before the first step; a LoRA run trains only the
adapters and leaves an adapter the official `VoxCPMModel.load_lora_weights` loads with no skipped key
and generates with as we do; a bad path and a mismatched architecture each give one clear message."""
from __future__ import annotations

import json

import pytest
import torch
import yaml

import models
from models.official_reference import build_official, install_stubs, small_official_config, write_official_folder
from voxlab.checkpoint import load_checkpoint
from voxlab.cli.train import main, train
from voxlab.config import ConfigError

install_stubs()  # torchaudio stand-in before the package is imported
pytest.importorskip("voxcpm")


@pytest.fixture(scope="module")
def official(tts_assets, tmp_path_factory):
    _, _, vae_dir = tts_assets
    vae_config = json.loads((vae_dir / "audiovae_config.json").read_text())
    off = build_official(small_official_config(feat_dim=vae_config["latent_dim"]), vae_config, seed=0)
    vae_state = torch.load(vae_dir / "audiovae.pth", weights_only=True)["state_dict"]
    off.audio_vae.load_state_dict(vae_state)  # the session's VAE: its latent cache is shared with other tests
    folder = write_official_folder(off, tmp_path_factory.mktemp("finetune") / "official", vae_config)
    return folder, {k: v for k, v in off.state_dict().items() if not k.startswith("audio_vae.")}


def args(tts_assets, folder, *extra):
    root, corpus, _ = tts_assets
    return [f"init.model={folder}", f"data.train_manifest={corpus}/train.jsonl", f"data.val_manifest={corpus}/val.jsonl",
            f"run.root={root / 'finetune_runs'}", "trainer.max_steps=2", "data.max_batch_size=8", *extra]


def test_lora_run_starts_from_the_model_and_leaves_an_official_adapter(tts_assets, official):
    from models.official_reference import import_official
    from test_inference_parity import close, official_generate
    from voxcpm.model.voxcpm import LoRAConfig

    folder, base = official
    run = train("finetune_lora", None, args(tts_assets, folder))
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["model"]["lm"]["hidden_size"] == 32 and cfg["model"]["lora"]["r"] == 8  # the model's own network
    assert cfg["text"]["kind"] == "hf" and cfg["text"]["path"] == str(folder) and cfg["vae"]["path"] == str(folder)
    state = {k[len("model."):]: v for k, v in load_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"].items()}
    frozen = {k: v for k, v in state.items() if "lora_" not in k}
    assert frozen.keys() == base.keys() and all(torch.equal(frozen[k], base[k]) for k in base)  # init, then frozen
    assert any(v.abs().sum() > 0 for k, v in state.items() if k.endswith("lora_B"))  # the adapters trained

    adapter = run / "lora" / "last"
    info = json.loads((adapter / "lora_config.json").read_text())
    assert info["base_model"] == str(folder) and (run / "lora" / "step_0000002" / "lora_weights.safetensors").is_file()
    assert (run / "export" / "config.json").is_file()  # the merged model as an official folder
    off = import_official().VoxCPMModel.from_local(str(folder), optimize=False, device="cpu",
                                                   lora_config=LoRAConfig(**info["lora_config"]))
    loaded, skipped = off.load_lora_weights(str(adapter), device="cpu")
    assert skipped == [] and len(loaded) == sum(k.endswith(("lora_A", "lora_B")) for k in state)
    ours = models.load(run, optimize=False)  # our checkpoint of the LoRA run
    got = ours.synthesize_batch(["hello world"], temperature=0.0, max_len=4)[0].patches
    _, ref = official_generate(off, "hello world", max_len=4)
    close(got, ref, "latents: our LoRA run vs the official model with its adapter")


def test_full_run_starts_from_the_model_weights(tts_assets, official):
    folder, base = official
    run = train("finetune_full", None, args(tts_assets, folder, "optim.lr=0.0", "trainer.max_steps=1"))
    state = {k[len("model."):]: v for k, v in load_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"].items()}
    assert state.keys() == base.keys() and all(torch.equal(state[k], base[k]) for k in base)  # lr 0: the init itself


def test_a_bad_path_and_a_mismatched_architecture_each_give_one_message(tts_assets, official, capsys):
    folder, _ = official
    assert main(["--exp", "finetune_lora", *args(tts_assets, folder / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: init.model={folder / 'missing'}: ") and "no such file or folder" in err
    with pytest.raises(ConfigError, match=r"finetune_full: init.model is required \(make finetune MODEL=\.\.\.\)"):
        train("finetune_full", None, ["init.model="])
    with pytest.raises(ConfigError, match=r"its architecture differs from the experiment's model section .*"
                                          r"model\.lm\.hidden_size: experiment 128, init\.model 32"):
        train("d256s9", "tiny", args(tts_assets, folder))


@pytest.mark.slow
def test_a_lora_run_resumes_exactly(tts_assets, official):
    """Two steps, a resume, two more = four straight (a constant rate: the cosine's shape follows
    max_steps, which the resume changes; small batches: the epoch is longer than the four steps)."""
    folder, _ = official
    common = ["optim.schedule.name=constant", "optim.lr=1e-2", "data.max_batch_size=2"]
    straight = train("finetune_lora", None, args(tts_assets, folder, *common, "trainer.max_steps=4"))
    first = train("finetune_lora", None, args(tts_assets, folder, *common, "trainer.max_steps=2"))
    resumed = train(None, overrides=["trainer.max_steps=4"], resume=str(first))
    a, b = (load_checkpoint(r / "checkpoints" / "last.ckpt")["state_dict"] for r in (straight, resumed))
    assert resumed == first and a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6
    assert any(float(v.abs().max()) > 0 for k, v in b.items() if k.endswith("lora_B"))  # the adapter moved


def test_a_lora_setting_that_matches_no_layer_is_one_line(tts_assets, official, capsys):
    """Every target misspelt (in each part), nothing enabled, only a projection that does not exist,
    a bad rank or field: one line naming model.lora, no traceback, no run folder."""
    folder, _ = official
    root = tts_assets[0]
    cases = {("model.lora.target_modules_lm=[q_prj,k_prj]", "model.lora.target_modules_dit=[v_prj]"): "no layer matched",
             ("model.lora.enable_lm=false", "model.lora.enable_dit=false"): "no layer matched",
             ("model.lora.enable_lm=false", "model.lora.enable_dit=false", "model.lora.enable_proj=true",
              "model.lora.target_proj_modules=[lm_to_dit]"): "no layer matched",
             ("model.lora.r=0",): "model.lora.r=0"}
    for overrides, message in cases.items():
        runs = root / "lora_no_match_runs"
        assert main(["--exp", "finetune_lora", *args(tts_assets, folder, *overrides), f"run.root={runs}"]) == 2
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and errors[0].startswith("error: model.lora") and message in errors[0], overrides
        assert "Traceback" not in err and not runs.exists(), overrides
