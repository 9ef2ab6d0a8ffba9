"""`make lm [SCALE=tiny]`: pre-train a tiny causal text LM for TSLM initialisation at tiny scale.

No pretrained text LM can be downloaded here, so the LM-init ablations (d256s9 vs no_lm_init,
the no_ralm rows) would be meaningless at tiny scale without one. This trains a
`transformers.LlamaForCausalLM` with the TSLM's shape (read from the experiment's
`model.lm` section) on the embedded corpus's text-only corpus (`lm_text.txt`, larger than the
speech corpus's sentences), with the character tokenizer of the corpus, and saves it in the
Hugging Face folder format (`config.json` + `model.safetensors`) that `model.lm_init.path`
takes, exactly as a real MiniCPM/Llama folder would be. `voxlab_lm.json` beside them records the
training summary and the characters (the LM's vocabulary, which LM init checks the TTS tokenizer
against).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from lightning_modules.schedules import lr_lambda
from voxlab.config import ConfigError, compose
from voxlab.text import CharTokenizer, EOS_ID, build_tokenizer, tokenizer_spec


def llama_config(lm: dict, vocab_size: int):
    from transformers import LlamaConfig

    if lm.get("rope_scaling") or lm.get("use_mup"):
        raise ConfigError("make lm builds a plain-RoPE, muP-free LM: set model.lm.rope_scaling=null "
                          "and model.lm.use_mup=false for this scale")
    heads = lm["num_attention_heads"]
    return LlamaConfig(vocab_size=vocab_size, hidden_size=lm["hidden_size"], intermediate_size=lm["intermediate_size"],
                       num_hidden_layers=lm["num_hidden_layers"], num_attention_heads=heads,
                       num_key_value_heads=lm["num_key_value_heads"],
                       head_dim=lm.get("kv_channels") or lm["hidden_size"] // heads,
                       rms_norm_eps=lm["rms_norm_eps"], rope_theta=lm["rope_theta"],
                       max_position_embeddings=lm.get("max_position_embeddings", 4096),
                       tie_word_embeddings=False, bos_token_id=1, eos_token_id=EOS_ID, pad_token_id=0)


def _token_stream(texts: list[str], tok: CharTokenizer) -> torch.Tensor:
    ids: list[int] = []
    for text in texts:
        ids.extend(tok.encode(text))
        ids.append(EOS_ID)
    return torch.tensor(ids, dtype=torch.long)


LM_RECORD = "voxlab_lm.json"  # what `make lm` writes into its folder: the mark of a folder it made


def check_lm_dir(out_dir: Path) -> None:
    """`make lm` replaces only a folder it made (holding LM_RECORD) or an empty one: a folder of the
    user's (a real LM, anything else) named by model.lm_init.path is never emptied or written into."""
    out_dir = Path(out_dir)
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise ConfigError(f"model.lm_init.path={out_dir} is a file, not a folder: choose a new path for make lm")
    names = sorted(p.name for p in out_dir.iterdir())
    if names and LM_RECORD not in names:
        shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
        raise ConfigError(f"model.lm_init.path={out_dir} is a folder make lm did not create (it holds {shown}): it "
                          "is never replaced; choose a new path for make lm, or use the folder as it is (make train)")


def pretrain_text_lm(out_dir: str | Path, lm: dict, vocab_size: int, text_file: str | Path, vocab_file: str | Path,
                     steps: int = 600, batch_size: int = 16, seq_len: int = 128, lr: float = 3e-3,
                     seed: int = 0, progress: bool = True, tokenizer=None) -> dict:
    """Train and save; returns a summary (initial and final loss, held-out perplexity). The text
    is read through `tokenizer` (the TTS's front end, e.g. phonemes) or else the characters of
    `vocab_file`."""
    from transformers import LlamaForCausalLM

    out_dir, text_file = Path(out_dir), Path(text_file)
    check_lm_dir(out_dir)  # before any training
    if not text_file.is_file():
        raise FileNotFoundError(f"{text_file}: text corpus not found (run `make data`)")
    tok = tokenizer if tokenizer is not None else CharTokenizer.from_file(vocab_file)
    if tok.vocab_size > vocab_size:
        raise ConfigError(f"model.lm.vocab_size={vocab_size} is smaller than the corpus vocabulary ({tok.vocab_size})")
    torch.manual_seed(seed)
    lines = [line for line in text_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if hasattr(tok, "warm"):  # phonemes: the whole text through espeak in one call
        tok.warm(lines)
    split = max(1, len(lines) // 20)
    train_ids, val_ids = _token_stream(lines[split:], tok), _token_stream(lines[:split], tok)
    model = LlamaForCausalLM(llama_config(lm, vocab_size))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(  # 50 warm-up steps times a cosine over the whole run
        opt, lr_lambda(warmup_steps=50, decay="cosine", decay_start=0, decay_steps=steps))
    gen = torch.Generator().manual_seed(seed)
    losses = []
    start = time.time()
    for _ in tqdm(range(steps), desc="pre-training the tiny text LM", disable=not progress):
        starts = torch.randint(0, len(train_ids) - seq_len - 1, (batch_size,), generator=gen)
        batch = torch.stack([train_ids[s:s + seq_len] for s in starts.tolist()])
        loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss))
    model.eval()
    with torch.no_grad():
        chunks = val_ids[: (len(val_ids) // seq_len) * seq_len].view(-1, seq_len)[:32]
        val_loss = float(model(input_ids=chunks, labels=chunks).loss)
    summary = {"steps": steps, "first_loss": losses[0], "final_loss": sum(losses[-20:]) / len(losses[-20:]),
               "val_loss": val_loss, "val_perplexity": math.exp(val_loss), "seconds": round(time.time() - start, 1),
               "vocab_file": str(vocab_file), "text_file": str(text_file), "tokenizer": tok.kind}
    # the characters themselves: LM init checks the TTS tokenizer against them (models.lm_init)
    record = {**summary, "vocabulary": tokenizer_spec(tok)}
    # written beside the folder, then renamed into place (a previous one, of `make lm` again, set
    # aside first): the folder appears whole, to the ranks waiting for it and after a kill
    tmp, old = (out_dir.with_name(f".{out_dir.name}.{kind}{os.getpid()}") for kind in ("tmp", "old"))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        (tmp / LM_RECORD).write_text(json.dumps(record, indent=2, ensure_ascii=False), encoding="utf-8")
        check_lm_dir(out_dir)  # again: the folder may have appeared while training
        if out_dir.exists():
            os.rename(out_dir, old)
        os.rename(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return summary


def wait_for_lm(cfg, poll_seconds: float = 2.0) -> Path | None:
    """`ensure_lm` for the ranks other than zero: the LM folder, once rank zero has made it."""
    init = cfg.model.get("lm_init") or {}
    if init.get("mode", "none") == "none" or cfg.scale != "tiny" or not init.get("path"):
        return ensure_lm(cfg)  # nothing to build: the same answer (or error) as on rank zero
    path = Path(init["path"])
    while not path.is_dir():
        time.sleep(poll_seconds)
    return path


def ensure_lm(cfg, progress: bool = True) -> Path | None:
    """The LM folder an LM-initialised experiment needs. At tiny scale a missing one is built;
    at any other scale a missing one is an error naming the config key."""
    init = cfg.model.get("lm_init") or {}
    if init.get("mode", "none") == "none":
        return None
    path = init.get("path")
    if path and Path(path).is_dir():
        return Path(path)
    if cfg.scale == "tiny" and path:
        print(f"[lm] {path} is missing: pre-training the tiny text LM first (make lm)")
        build_from_config(cfg, progress=progress)
        return Path(path)
    raise ConfigError(
        f"model.lm_init.mode={init.get('mode')} needs a pretrained causal-LM folder (MiniCPM / Llama layout, "
        f"safetensors or pytorch_model.bin): set model.lm_init.path (now {path!r}), e.g. "
        "ARGS=\"model.lm_init.path=/models/MiniCPM4-0.5B\", or use the no_lm_init experiment")


def build_from_config(cfg, progress: bool = True) -> dict:
    from omegaconf import OmegaConf

    lm = OmegaConf.to_container(cfg.model.lm, resolve=True)

    tokenizer = build_tokenizer(cfg.text) if cfg.text.kind == "phoneme" else None
    return pretrain_text_lm(cfg.model.lm_init.path, lm, lm["vocab_size"], cfg.lm_pretrain.text_file,
                            cfg.text.vocab, steps=cfg.lm_pretrain.steps, batch_size=cfg.lm_pretrain.batch_size,
                            seq_len=cfg.lm_pretrain.seq_len, lr=cfg.lm_pretrain.lr, seed=cfg.seed, progress=progress,
                            tokenizer=tokenizer)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", default="d256s9", help="experiment whose TSLM shape and lm_init.path to use")
    parser.add_argument("--scale", default="tiny")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    try:
        cfg = compose(args.exp, args.scale, args.overrides)
        summary = build_from_config(cfg)
    except (ConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"[lm] saved {cfg.model.lm_init.path}: loss {summary['first_loss']:.2f} -> {summary['final_loss']:.2f}, "
          f"held-out perplexity {summary['val_perplexity']:.1f} ({summary['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
