"""Resemblyzer's GE2E speaker encoder (weights ship inside its wheel): the offline SIM backend.

Not the protocol's model (WavLM-large + ECAPA-TDNN): its scores are only comparable with other
resemblyzer scores.
"""
from __future__ import annotations

import numpy as np
import torch

MIN_SAMPLES = 1600  # 0.1 s: below this the VAD trimmed (almost) everything away


class ResemblyzerSim:
    name = "resemblyzer"
    description = "Resemblyzer VoiceEncoder (GE2E LSTM, 256-d)"

    def __init__(self, device: str = "cpu"):
        from resemblyzer import VoiceEncoder

        self.device = device
        self.encoder = VoiceEncoder(device=device, verbose=False)

    def info(self) -> dict:
        from importlib.metadata import version

        return {"name": self.name, "version": version("Resemblyzer"), "model": self.description,
                "device": str(self.device), "comparable_to_seed_tts_eval": False}

    @torch.inference_mode()
    def embed(self, wav: np.ndarray) -> torch.Tensor:
        from resemblyzer.audio import normalize_volume, trim_long_silences
        from resemblyzer.hparams import audio_norm_target_dBFS

        # resemblyzer's preprocess_wav at 16 kHz, but keep the audio when VAD finds no speech
        wav = normalize_volume(np.asarray(wav, dtype=np.float32), audio_norm_target_dBFS,
                               increase_only=True)
        trimmed = trim_long_silences(wav)
        if trimmed.size >= MIN_SAMPLES:
            wav = trimmed
        return torch.from_numpy(self.encoder.embed_utterance(wav))
