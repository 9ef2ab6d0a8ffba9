"""`models.load(path) -> TTSModel` for any MODEL, and `models.export(model, folder)`.

Accepted MODEL kinds (docs/design.md section 2):
- a Lightning checkpoint of the TTS module (`*.ckpt`; its keys: voxlab.checkpoint): `state_dict`
  with the backbone under `model.*`, `voxlab_config` (resolved config; `model` = VoxCPMBackbone
  kwargs + `_target_`), `voxlab_vae` = {"config": AudioVAE kwargs, "state_dict"} and `voxlab_tokenizer` =
  {"kind": "char", "chars": [...]} or {"kind": "hf", "path": folder}. Without the last two, the
  config's `vae.path` and `text` section are used when they point at existing files;
- a run folder (its last checkpoint, voxlab.runs.last_checkpoint);
- an exported or official VoxCPM folder: `config.json`, `model.safetensors` or `pytorch_model.bin`,
  `audiovae.pth` or `audiovae.safetensors`, tokenizer files. An official VoxCPM2 folder
  (`"architecture": "voxcpm2"`) builds the VoxCPM2 backbone and the AudioVAE V2 (models.audiovae_v2;
  16 kHz in, `out_sample_rate` out); `load_backbone(folder)` gives the backbone alone.

Export writes the official folder format: `config.json` (models.official), `model.safetensors`,
`audiovae.pth` (weight_g / weight_v keys) + `audiovae_config.json`, and the tokenizer. Two VoxLab
files ride along: `voxlab_model.json` (the backbone kwargs: exact round trip, also for ablations
the official format cannot express, exported with official=False) and, for a character tokenizer,
`voxlab_tokenizer.json` (its characters). A character tokenizer is also written as Llama tokenizer
files (one BPE token per character, space as "▁", no prefix space), so the official package loads
the folder; those files map unknown characters to nothing where ours map them to <unk>.
A backbone with LoRA adapters is exported with them merged into its weights (models.lora), so
the folder is a plain official model.
Everything is read weights-only (torch.load(weights_only=True) or safetensors).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from models.lora import load_adapter, merge_lora
from models.official import from_official_config, read_official_config, to_official_config
from models.tts import TTSModel
from models.voxcpm import VoxCPMBackbone
from models.weights import (WeightsError, audiovae_from_payload, export_audiovae, load_audiovae, load_strict,
                            read_state_dict)
from voxlab.checkpoint import (CONFIG_KEY, TOKENIZER_KEY, VAE_KEY, CheckpointError, read_config, read_weights_file,
                               submodule_state)
from voxlab.runs import LAST_CHECKPOINT, has_last_checkpoint, last_checkpoint
from voxlab.text import FIRST_CHAR_ID, HFTokenizer, TokenizerSpecError, build_tokenizer, tokenizer_spec

BACKBONE_TARGET = "models.voxcpm.VoxCPMBackbone"
MODEL_FILES = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
OURS_MODEL, OURS_TOKENIZER = "voxlab_model.json", "voxlab_tokenizer.json"
ACCEPTED = ("MODEL accepts: a Lightning checkpoint of the TTS module (*.ckpt); a run folder "
            f"(runs/<exp>/<version>/ with {LAST_CHECKPOINT}); an exported or official VoxCPM folder "
            "(config.json, model.safetensors or pytorch_model.bin, audiovae.pth or audiovae.safetensors, "
            "tokenizer files)")


class ModelPathError(CheckpointError):
    """A MODEL path that cannot be loaded; the message names the file and what is missing."""


def load(path: str | Path, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
         optimize: bool = True, lora: str | Path | None = None,
         vae_dtype: str | torch.dtype | None = None) -> TTSModel:
    """A TTSModel in eval mode. `dtype` ("float32", "bfloat16", "int8", or a torch dtype) sets the
    backbone's weights (TTSModel.set_precision); `vae_dtype` ("float32", the default as in the
    official code, or "bfloat16") the AudioVAE's (TTSModel.set_vae_precision); `optimize` packs CPU
    weights (models.cpu_linear); `lora` loads a LoRA adapter folder (ours or the official
    trainer's: models.lora.load_adapter) before any of that."""
    path = Path(path)
    if path.is_dir():
        if (path / "config.json").is_file() or (path / OURS_MODEL).is_file():
            model = _from_folder(path)
        elif has_last_checkpoint(path):
            model = _from_checkpoint(last_checkpoint(path))
        elif any((path / n).is_file() for n in ("audiovae.pth", "audiovae.safetensors")):
            raise ModelPathError(f"{path}: an AudioVAE folder (audiovae weights, no TTS config.json), not a TTS "
                                 f"model; load it with models.load_audiovae. {ACCEPTED}")
        else:
            raise ModelPathError(f"{path}: a folder with neither config.json nor {LAST_CHECKPOINT}. {ACCEPTED}")
    elif path.is_file():
        if path.suffix != ".ckpt":
            raise ModelPathError(f"{path}: a file that is not a Lightning checkpoint (*.ckpt). {ACCEPTED}")
        model = _from_checkpoint(path)
    else:
        raise ModelPathError(f"{path}: no such file or folder. {ACCEPTED}")
    if lora is not None:
        load_adapter(model.backbone, lora)
    if device is not None:
        model.to(device)
    if dtype is not None:
        model.set_precision(dtype)
    if vae_dtype is not None:
        model.set_vae_precision(vae_dtype)
    if optimize and model.device.type == "cpu":
        model.optimize()
    return model.eval()


# ---- readers -----------------------------------------------------------------------------------
def _backbone(kwargs: dict, source: str) -> VoxCPMBackbone:
    kwargs = dict(kwargs)
    target = kwargs.pop("_target_", BACKBONE_TARGET)
    if target != BACKBONE_TARGET:
        hint = "; an AudioVAE loads with models.load_audiovae" if "audiovae" in target.lower() else ""
        raise ModelPathError(f"{source}: model._target_ is {target!r}, not a TTS backbone ({BACKBONE_TARGET}){hint}")
    try:
        return VoxCPMBackbone(**kwargs)
    except (TypeError, ValueError, KeyError) as err:
        raise ModelPathError(f"{source}: backbone config not understood: {err}") from None


def _tokenizer(spec: dict, source: str):
    try:
        return build_tokenizer(spec, source)
    except TokenizerSpecError as err:
        raise ModelPathError(str(err)) from None


def _from_checkpoint(path: Path) -> TTSModel:
    ckpt = read_weights_file(path)
    if not isinstance(ckpt, dict):
        raise ModelPathError(f"{path}: not a checkpoint dict. {ACCEPTED}")
    config = read_config(ckpt)
    if not isinstance(config, dict) or "model" not in config:
        raise ModelPathError(f"{path}: no `{CONFIG_KEY}` with a `model` section (not a VoxLab TTS checkpoint)")
    backbone = _backbone(config["model"], str(path))
    state = submodule_state(ckpt, "model")
    if not state:
        raise ModelPathError(f"{path}: its state_dict has no `model.*` (backbone) weights")
    load_strict(backbone, state, f"{path} (model.*)")

    if isinstance(ckpt.get(VAE_KEY), dict):
        vae = audiovae_from_payload(ckpt[VAE_KEY], str(path))
    else:
        vae_path = (config.get("vae") or {}).get("path")
        if not vae_path or vae_path == "auto" or not Path(vae_path).exists():
            raise ModelPathError(f"{path}: no `{VAE_KEY}` in the checkpoint and config vae.path={vae_path!r} "
                                 "is not an existing VAE file or run folder")
        vae = load_audiovae(vae_path)

    if isinstance(ckpt.get(TOKENIZER_KEY), dict):
        tokenizer = _tokenizer(ckpt[TOKENIZER_KEY], f"{path} ({TOKENIZER_KEY})")
    elif isinstance(config.get("text"), dict):
        tokenizer = _tokenizer(config["text"], f"{path} (config text section)")
    else:
        raise ModelPathError(f"{path}: no `{TOKENIZER_KEY}` and no `text` section in its config")
    return TTSModel(backbone, vae.eval(), tokenizer)


def load_backbone(folder: str | Path) -> VoxCPMBackbone:
    """The backbone alone (eval mode, float32) of an exported or official VoxCPM / VoxCPM2 folder:
    its config and weights, loaded strictly; no AudioVAE or tokenizer needed. What `models.load`
    builds first."""
    folder = Path(folder)
    if not (folder / "config.json").is_file() and not (folder / OURS_MODEL).is_file():
        raise ModelPathError(f"{folder}: no config.json or {OURS_MODEL}: not a VoxCPM model folder")
    if (folder / OURS_MODEL).is_file():
        kwargs = json.loads((folder / OURS_MODEL).read_text(encoding="utf-8"))
    else:
        try:
            kwargs = from_official_config(read_official_config(folder))
        except (KeyError, ValueError) as err:
            raise ModelPathError(f"{folder / 'config.json'}: {err}") from None
    backbone = _backbone(kwargs, str(folder))
    weights = next((folder / n for n in MODEL_FILES if (folder / n).is_file()), None)
    if weights is None:
        raise ModelPathError(f"{folder}: no backbone weights ({' or '.join(MODEL_FILES)}). {ACCEPTED}")
    load_strict(backbone, read_state_dict(weights), str(weights))
    return backbone.eval()


def _from_folder(folder: Path) -> TTSModel:
    backbone = load_backbone(folder)
    try:  # a VoxCPM2 folder's VAE is an AudioVAE V2 (models.weights reads its config.json so)
        vae = load_audiovae(folder)
    except WeightsError as err:
        raise ModelPathError(f"{folder}: AudioVAE: {err}") from None
    if (folder / OURS_TOKENIZER).is_file():
        tokenizer = _tokenizer(json.loads((folder / OURS_TOKENIZER).read_text(encoding="utf-8")),
                               str(folder / OURS_TOKENIZER))
    elif any((folder / n).is_file() for n in TOKENIZER_FILES):
        tokenizer = HFTokenizer(folder)
    else:
        raise ModelPathError(f"{folder}: no tokenizer files ({', '.join(TOKENIZER_FILES)} or {OURS_TOKENIZER})")
    return TTSModel(backbone, vae, tokenizer)


# ---- export ------------------------------------------------------------------------------------
def export(model: TTSModel, folder: str | Path, official: bool = True, overwrite: bool = False) -> Path:
    """Write `model` as an official VoxCPM folder (see the module docstring); returns the folder.
    A non-empty folder must be a previous export (replaced with overwrite=True, its files first
    removed); any other is refused.
    official=False also exports what the official format cannot express (ablations): then there
    is no config.json and only VoxLab loads the folder."""
    from safetensors.torch import save_file

    folder = Path(folder)
    _check_export_folder(folder, overwrite)
    backbone = model.backbone
    if backbone.config.get("lora"):  # LoRA adapters are folded into the base weights (models.lora)
        import copy

        backbone = merge_lora(copy.deepcopy(backbone))
    bb_config = json.loads(json.dumps(backbone.config))  # plain, JSON-safe copy
    config = None
    try:
        config = to_official_config(bb_config, audio_vae_config=model.vae.config())
    except ValueError:
        if official:
            raise
    if folder.is_dir() and any(folder.iterdir()):
        _clear_previous_export(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (folder / OURS_MODEL).write_text(json.dumps({"_target_": BACKBONE_TARGET, **bb_config}, indent=2) + "\n",
                                     encoding="utf-8")
    state = {k: v.detach().cpu().contiguous() for k, v in backbone.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    export_audiovae(model.vae, folder)
    _export_tokenizer(model.tokenizer, folder)
    return folder


# what an export writes or the loader reads: a stale one (config.json, voxlab_tokenizer.json)
# left by an earlier export would be loaded in place of the new model's
EXPORT_FILES = ("config.json", OURS_MODEL, OURS_TOKENIZER, *MODEL_FILES, *TOKENIZER_FILES, "special_tokens_map.json",
                "audiovae.pth", "audiovae.safetensors", "audiovae_config.json")


def _check_export_folder(folder: Path, overwrite: bool) -> None:
    """New or empty: fine; a previous export of ours (voxlab_model.json): only with overwrite;
    anything else (an official folder, a user's files): never, even with overwrite."""
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder}: is a file, not a folder: choose a new export folder")
    if not folder.is_dir() or not any(folder.iterdir()):
        return
    if not (folder / OURS_MODEL).is_file():
        raise FileExistsError(f"{folder}: exists, is not empty and is not a VoxLab export (no {OURS_MODEL}): "
                              "it is never written into, even with overwrite=True; choose a new or empty folder")
    if not overwrite:
        raise FileExistsError(f"{folder}: exists and is not empty: a previous export (pass overwrite=True to "
                              "replace it)")


def _clear_previous_export(folder: Path) -> None:
    for name in EXPORT_FILES:
        (folder / name).unlink(missing_ok=True)


def _export_tokenizer(tokenizer, folder: Path) -> None:
    kind = getattr(tokenizer, "kind", None)
    if kind == "hf":
        tokenizer.tok.save_pretrained(str(folder))
        return
    if kind not in ("char", "phoneme"):
        raise ValueError(f"cannot export a tokenizer of type {type(tokenizer).__name__}")
    (folder / OURS_TOKENIZER).write_text(json.dumps(tokenizer_spec(tokenizer), ensure_ascii=False) + "\n",
                                         encoding="utf-8")
    if kind == "char" and "\u2581" not in tokenizer.chars:  # "▁" stands for the space in Llama tokenizers
        llama_char_tokenizer(tokenizer).save_pretrained(str(folder))


def llama_char_tokenizer(tokenizer):
    """A LlamaTokenizerFast with one token per character at the CharTokenizer's ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaTokenizerFast

    specials = {0: "<pad>", 1: "<s>", 2: "</s>", 3: "<unk>"}
    vocab = {specials.get(i, f"<reserved_{i}>"): i for i in range(FIRST_CHAR_ID)}
    for i, c in enumerate(tokenizer.chars):
        vocab["\u2581" if c == " " else c] = FIRST_CHAR_ID + i
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="never", split=False)
    tok.decoder = decoders.Metaspace(prepend_scheme="never", split=False)
    return LlamaTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                              pad_token="<pad>", add_prefix_space=False)
