"""TSLM initialisation from a local Hugging Face causal LM (Llama / MiniCPM key layout).

Config keys (`model.lm_init`): `mode` none | full | partial, `path` (the LM folder: config.json +
model.safetensors, sharded safetensors with model.safetensors.index.json, or pytorch_model.bin),
`num_layers` (partial: how many bottom layers to copy; the rest keep their random init).

full copies the token embedding, every layer and the final norm and needs equal depths; partial
copies the embedding, layers 0..num_layers-1 and the final norm. The LM head is not used (the
TSLM has none). Any shape mismatch fails naming the tensor; settings that shapes cannot reveal
(RoPE theta, norm eps, muP) are compared with the folder's config.json and reported.

The copied embedding rows mean the LM's tokens, so the text tokenizer must be the LM's own: given
one (`tokenizer=`, as training does), every token of it must have the same id in the LM's
vocabulary, read from the folder's tokenizer files or, for the tiny LM VoxLab pre-trains
(voxlab.cli.lm), from the character vocabulary its `voxlab_lm.json` records. Otherwise init fails
naming both.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from models.minicpm import MiniCPMModel
from voxlab.checkpoint import read_weights_file
from voxlab.text import CharTokenizer, HFTokenizer, build_tokenizer

log = logging.getLogger(__name__)
MODES = ("none", "full", "partial")


class LMInitError(ValueError):
    pass


def _read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    single, index, binary = folder / "model.safetensors", folder / "model.safetensors.index.json", folder / "pytorch_model.bin"
    if single.is_file():
        return load_file(str(single))
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        out: dict[str, torch.Tensor] = {}
        for shard in shards:
            out.update(load_file(str(folder / shard)))
        return out
    if binary.is_file():
        sd = read_weights_file(binary)
        return sd.get("state_dict", sd)
    raise LMInitError(f"{folder}: no model.safetensors, model.safetensors.index.json or pytorch_model.bin "
                      f"(model.lm_init.path must be a Hugging Face causal-LM folder)")


def _strip_prefix(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """LlamaForCausalLM keys are `model.layers...`; a bare LlamaModel's are `layers...`."""
    if any(k.startswith("model.") for k in sd):
        return {k[len("model."):]: v for k, v in sd.items() if k.startswith("model.")}
    return dict(sd)


def _compare_settings(folder: Path, lm: MiniCPMModel) -> list[str]:
    path = folder / "config.json"
    if not path.is_file():
        return [f"{path} missing: RoPE / norm / muP settings not checked"]
    src, cfg = json.loads(path.read_text()), lm.config
    if "rope_theta" not in src and isinstance(src.get("rope_parameters"), dict):  # transformers >= 5
        src["rope_theta"] = src["rope_parameters"].get("rope_theta")
    notes = []
    for key in ("rope_theta", "rms_norm_eps", "num_attention_heads", "num_key_value_heads"):
        if src.get(key) is not None and float(src[key]) != float(getattr(cfg, key)):
            notes.append(f"{key}: LM folder {src[key]} vs model.lm.{key} {getattr(cfg, key)}")
    src_mup = src.get("use_mup", "scale_depth" in src)  # MiniCPM configs carry muP settings
    if bool(src_mup) != cfg.use_mup:
        notes.append(f"muP: LM folder {'on' if src_mup else 'off'} vs model.lm.use_mup {cfg.use_mup}")
    return notes


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


def lm_vocabulary(folder: Path) -> tuple[dict[str, int], str]:
    """(token text -> id, where it was read) of the tokenizer the LM in `folder` was trained with."""
    record = folder / "voxlab_lm.json"
    if record.is_file():
        info = json.loads(record.read_text(encoding="utf-8"))
        if isinstance(info.get("vocabulary"), dict) and ("chars" in info["vocabulary"]
                                                         or info["vocabulary"].get("kind") == "phoneme"):
            tok = build_tokenizer(info["vocabulary"], f"{record} (vocabulary)")
            noun = "characters" if tok.kind == "char" else f"{tok.kind} symbols"
            return tok.vocabulary(), f"the {len(tok.chars)} {noun} recorded in {record}"
        vocab = Path(info.get("vocab_file") or "")
        if info.get("tokenizer") == "char" and vocab.is_file():  # an LM recorded before the characters were
            return CharTokenizer.from_file(vocab).vocabulary(), f"the character vocabulary {vocab} named in {record}"
    if any((folder / n).is_file() for n in TOKENIZER_FILES):
        return HFTokenizer(folder).vocabulary(), f"the tokenizer files of {folder}"
    raise LMInitError(f"{folder}: no tokenizer files ({', '.join(TOKENIZER_FILES)}) and no voxlab_lm.json "
                      "vocabulary: cannot check that the text tokenizer is the LM's own")


def check_tokenizer(folder: Path, tokenizer) -> str:
    """Fails unless every token of `tokenizer` has the same id in the LM's vocabulary; returns the
    LM vocabulary's source."""
    theirs, where = lm_vocabulary(folder)
    ours = tokenizer.vocabulary()
    wrong = sorted((t for t, i in ours.items() if theirs.get(t) != i), key=ours.get)
    if wrong:
        shown = ", ".join(f"{t!r} is {ours[t]} here, {theirs.get(t, 'absent')} in the LM" for t in wrong[:3])
        raise LMInitError(
            f"the text tokenizer ({type(tokenizer).__name__} from {getattr(tokenizer, 'source', '?')}, "
            f"{len(ours)} tokens) is not the LM's own ({where}, {len(theirs)} tokens): {len(wrong)} of its tokens "
            f"differ ({shown}). The copied embeddings mean the LM's tokens: use the LM's tokenizer "
            f"(text.kind=hf text.path={folder}) or model.lm_init.mode=none")
    return where


def init_lm(lm: MiniCPMModel, mode: str = "none", path: str | None = None, num_layers: int | None = None,
            tokenizer=None) -> dict | None:
    """Copy pretrained weights into `lm` in place. Returns a summary dict (None for mode none).
    `tokenizer`: the text frontend the model will be trained with, checked against the LM's own."""
    if mode not in MODES:
        raise LMInitError(f"model.lm_init.mode must be one of {MODES}, got {mode!r}")
    if mode == "none":
        return None
    if not path:
        raise LMInitError(f"model.lm_init.path is not set: mode {mode!r} needs a local Hugging Face causal-LM "
                          f"folder (or set model.lm_init.mode=none for a random TSLM)")
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise LMInitError(f"LM folder {folder} does not exist (model.lm_init.path)")
    ours = len(lm.layers)
    if mode == "full":
        copy_layers = ours
    else:
        if not num_layers or num_layers <= 0:
            raise LMInitError("model.lm_init.num_layers must be a positive integer for mode 'partial'")
        if num_layers > ours:
            raise LMInitError(f"model.lm_init.num_layers={num_layers} exceeds the TSLM's {ours} layers")
        copy_layers = num_layers

    if tokenizer is None:
        vocabulary = "not checked (no tokenizer given)"
        log.warning("LM init from %s: the text tokenizer is not checked against the LM's", folder)
    else:
        vocabulary = check_tokenizer(folder, tokenizer)
    src = _strip_prefix(_read_state_dict(folder))
    src_layers = {int(k.split(".")[1]) for k in src if k.startswith("layers.")}
    n_src = max(src_layers) + 1 if src_layers else 0
    if mode == "full" and n_src != ours:
        raise LMInitError(f"{folder}: the LM has {n_src} layers, the TSLM {ours} (model.lm.num_hidden_layers); "
                          f"mode 'full' needs equal depths, use mode 'partial' with model.lm_init.num_layers")
    if copy_layers > n_src:
        raise LMInitError(f"{folder}: the LM has {n_src} layers, model.lm_init.num_layers asks for {copy_layers}")

    target = lm.state_dict()
    wanted = [k for k in target if not k.startswith("layers.") or int(k.split(".")[1]) < copy_layers]
    missing = [k for k in wanted if k not in src]
    if missing:
        raise LMInitError(f"{folder}: tensor(s) missing from the LM checkpoint: {', '.join(missing[:8])}"
                          + (" ..." if len(missing) > 8 else ""))
    for k in wanted:
        if tuple(src[k].shape) != tuple(target[k].shape):
            raise LMInitError(f"{folder}: tensor {k!r} has shape {tuple(src[k].shape)} in the LM checkpoint "
                              f"but {tuple(target[k].shape)} in the TSLM (base_lm.{k})")
    with torch.no_grad():
        for k in wanted:
            target[k].copy_(src[k].to(target[k].dtype))
    notes = _compare_settings(folder, lm)
    for note in notes:
        log.warning("LM init setting differs: %s", note)
    summary = {"path": str(folder), "mode": mode, "layers_copied": copy_layers, "tensors": len(wanted), "notes": notes,
               "vocabulary": vocabulary}
    log.info("TSLM initialised from %s (%s, %d of %d layers)", folder, mode, copy_layers, ours)
    return summary
