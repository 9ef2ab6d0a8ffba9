"""English ASR with openai-whisper: greedy, language forced, no timestamps, batched 30 s windows.

The protocol (Seed-TTS-Eval) runs whisper-large-v3 greedily with the language forced to English on
16 kHz audio padded to one 30 s window; here a batch of such windows goes through `whisper.decode`
at once. Utterances longer than 30 s (the protocol silently truncates them) are transcribed in full
with whisper's long-form `transcribe` at temperature 0, and counted in `info()["long_form"]`.
fp32 on CPU, fp16 on GPU.
"""
from __future__ import annotations

import os
import urllib.error
from pathlib import Path

import numpy as np
import torch

from eval.errors import MissingWeightsError

DEFAULT_MODEL = "large-v3"


def whisper_cache_dir() -> Path:
    """Where openai-whisper keeps named checkpoints (its own rule: $XDG_CACHE_HOME or ~/.cache)."""
    base = os.getenv("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache"))
    return Path(base) / "whisper"


def resolve_whisper(spec: str) -> tuple[str, Path]:
    """(spec, checkpoint path) for a whisper model name or a local checkpoint; raises
    MissingWeightsError naming the expected file when it is not there (no download is tried)."""
    import whisper

    if spec in whisper._MODELS:
        path = whisper_cache_dir() / os.path.basename(whisper._MODELS[spec])
        if not path.is_file():
            raise MissingWeightsError(
                f"whisper {spec!r} weights not found: expected {path}. This machine cannot download "
                f"them: copy openai-whisper's {path.name} there (or set XDG_CACHE_HOME), or pass "
                "--whisper /path/to/checkpoint.pt (an openai-whisper checkpoint with 'dims' and "
                "'model_state_dict'; HF transformers folders are not this format).")
        return spec, path
    path = Path(spec).expanduser()
    if not path.is_file():
        raise MissingWeightsError(
            f"whisper checkpoint not found: {path}. Pass --whisper with a model name "
            f"({', '.join(sorted(whisper._MODELS))}; looked up in {whisper_cache_dir()}) or the path "
            "of an openai-whisper checkpoint file (.pt with 'dims' and 'model_state_dict').")
    return str(path), path


class WhisperASR:
    name = "openai-whisper"
    lang = "en"

    def __init__(self, spec: str = DEFAULT_MODEL, device: str = "cpu", batch_size: int = 8,
                 language: str = "en"):
        import whisper

        self.spec, self.path = resolve_whisper(spec)
        self.device = torch.device(device)
        self.batch_size = max(1, int(batch_size))
        self.fp16 = self.device.type == "cuda"
        try:
            self.model = whisper.load_model(self.spec, device=self.device,
                                            download_root=str(whisper_cache_dir()))
        except (urllib.error.URLError, OSError) as err:
            # a named checkpoint whose SHA256 does not match makes whisper try to download it again
            raise MissingWeightsError(
                f"whisper {spec!r}: {self.path} could not be used ({err}); it may be truncated or "
                "not the official file (its SHA256 is checked). Replace it.") from None
        self.model.eval()
        self.long_form = 0
        self.options = whisper.DecodingOptions(
            task="transcribe", language=language, temperature=0.0, without_timestamps=True,
            fp16=self.fp16)

    def info(self) -> dict:
        import whisper

        return {"name": self.name, "version": whisper.__version__, "model": self.spec,
                "checkpoint": str(self.path), "device": str(self.device),
                "dtype": "float16" if self.fp16 else "float32", "decoding": "greedy",
                "language": self.options.language, "batch_size": self.batch_size,
                "long_form": self.long_form, "protocol_exact": False,
                "protocol_note": "openai-whisper's decoder, not run_wer.py's transformers path"}

    @torch.inference_mode()
    def transcribe(self, wavs: list[np.ndarray]) -> list[str]:
        import whisper

        texts: list[str | None] = [None] * len(wavs)
        short = [i for i, w in enumerate(wavs) if len(w) <= whisper.audio.N_SAMPLES]
        for start in range(0, len(short), self.batch_size):
            idx = short[start:start + self.batch_size]
            mels = torch.stack([
                whisper.log_mel_spectrogram(
                    whisper.pad_or_trim(torch.from_numpy(np.asarray(wavs[i], dtype=np.float32))),
                    n_mels=self.model.dims.n_mels, device=self.device)
                for i in idx])
            for i, res in zip(idx, whisper.decode(self.model, mels, self.options)):
                texts[i] = res.text.strip()
        for i, w in enumerate(wavs):
            if texts[i] is None:
                self.long_form += 1
                out = self.model.transcribe(np.asarray(w, dtype=np.float32), language=self.options.language,
                                            task="transcribe", temperature=0.0, fp16=self.fp16,
                                            condition_on_previous_text=False, verbose=None)
                texts[i] = out["text"].strip()
        return texts
