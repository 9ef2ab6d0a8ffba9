"""What the training entry point builds for a LightningModule before `fit`, and hands in.

A module asks for a piece by naming it in its constructor (`TTSModule(config, vae, tokenizer,
lm_init)`); a module that names none is built from the config alone (the AudioVAE module):
- `vae`: the frozen AudioVAE of `vae.path` (`auto`: the newest finished AudioVAE run of the scale),
  pinned in the config when the run starts and checked against `vae.fingerprint` on a resume;
- `tokenizer`: the text frontend of the `text` section;
- `lm_init`: the pretrained text LM folder of `model.lm_init` (None when the run resumes: its
  weights come from the checkpoint). The tiny LM is pre-trained here when missing, once, by rank
  zero; the other ranks wait for its folder (it appears whole: voxlab.cli.lm).
"""
from __future__ import annotations

import inspect

from datamodules.tts import pinned_vae
from voxlab.cli.lm import ensure_lm, wait_for_lm
from voxlab.config import build, locate
from voxlab.text import build_tokenizer


def build_module(cfg, resuming: bool, main_process: bool):
    """The LightningModule `module._target_` names, with the pieces it asks for."""
    wanted = inspect.signature(locate(cfg.module._target_, key="module._target_")).parameters
    pieces = {}
    if "vae" in wanted:
        pieces["vae"] = pinned_vae(cfg)  # exactly the run's VAE (vae.fingerprint), or an error
    if "tokenizer" in wanted:
        pieces["tokenizer"] = build_tokenizer(cfg.text)
    if "lm_init" in wanted and not resuming:
        pieces["lm_init"] = ensure_lm(cfg) if main_process else wait_for_lm(cfg)
    return build(cfg, "module", **pieces)
