"""English ASR as Seed-TTS-Eval's own `run_wer.py` runs it: transformers Whisper (whisper-large-v3).

Per utterance, the steps of run_wer.py (BytedanceSpeech/seed-tts-eval, commit 752f429):
- soundfile reads the wav (float64); another rate than 16 kHz is resampled with
  `scipy.signal.resample` (FFT) to int(len * 16000 / sr) samples;
- `WhisperProcessor` makes the log-mel features of one 30 s window (longer audio is cut, as the
  protocol cuts it: counted in `info()["truncated_30s"]`);
- `generate` with the folder's generation_config (greedy, its max_length) and the decoder prompt
  forced to English transcription without timestamps. run_wer.py passes `forced_decoder_ids =
  processor.get_decoder_prompt_ids(language="english", task="transcribe")`; transformers 5 no
  longer takes that argument, and `language`/`task` give the same prompt (the parity test checks
  the token ids against run_wer.py's own lines);
- `batch_decode(..., skip_special_tokens=True)`, the text kept as it is (no strip).
One utterance at a time, in float32: the protocol's batch of one, and the dtype its
`from_pretrained` gave under transformers 4 (transformers 5 would keep the file's float16).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from eval.errors import EvalError, MissingWeightsError

SR = 16000
CONFIG_FILES = ("config.json", "generation_config.json")
FEATURE_FILES = ("preprocessor_config.json", "processor_config.json")  # either (transformers 4 / 5 layouts)
TOKENIZER_FILES = (("tokenizer.json",), ("vocab.json", "merges.txt"))  # either set
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
# whisper-large-v3's dimensions (config.json): the protocol's model, not just its code path
LARGE_V3 = {"num_mel_bins": 128, "d_model": 1280, "encoder_layers": 32, "decoder_layers": 32, "vocab_size": 51866}
HOW = ("Copy the Hugging Face folder openai/whisper-large-v3 (config.json, generation_config.json, "
       "preprocessor_config.json, tokenizer.json or vocab.json + merges.txt, model.safetensors) to this "
       "machine and pass --whisper DIR.")


def is_hf_whisper_folder(path: Path) -> bool:
    """A folder in the transformers layout (a CTranslate2 folder has config.json too, but model.bin
    and no model_type): then check_hf_folder names what it lacks."""
    if not path.is_dir() or (path / "model.bin").is_file():
        return False
    if any((path / f).is_file() for f in WEIGHT_FILES + ("generation_config.json",)):
        return True
    try:
        return "model_type" in json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False


def check_hf_folder(path: Path) -> dict:
    """config.json of a complete transformers Whisper folder, or MissingWeightsError naming what is absent."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise MissingWeightsError(f"transformers whisper folder not found: {path}. {HOW}")
    missing = [f for f in CONFIG_FILES if not (path / f).is_file()]
    if not any((path / f).is_file() for f in FEATURE_FILES):
        missing.append(" or ".join(FEATURE_FILES))
    if not any(all((path / f).is_file() for f in group) for group in TOKENIZER_FILES):
        missing.append("tokenizer.json or vocab.json + merges.txt")
    if not any((path / f).is_file() for f in WEIGHT_FILES):
        missing.append(" or ".join(WEIGHT_FILES))
    if missing:
        raise MissingWeightsError(f"transformers whisper folder {path} lacks {'; '.join(missing)}. {HOW}")
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise MissingWeightsError(f"{path / 'config.json'} is not readable JSON ({err}). {HOW}") from None
    if not isinstance(config, dict) or config.get("model_type") != "whisper":
        kind = config.get("model_type") if isinstance(config, dict) else None
        raise MissingWeightsError(f"{path / 'config.json'}: model_type is {kind!r}, not 'whisper'. {HOW}")
    return config


def is_large_v3(config: dict) -> bool:
    return all(config.get(k) == v for k, v in LARGE_V3.items())


def read_wav_16k(path: str | Path) -> np.ndarray:
    """run_wer.py's reading: soundfile, then scipy's FFT resampling when the rate is not 16 kHz."""
    import scipy.signal
    import soundfile as sf

    wav, sr = sf.read(str(path))
    if wav.ndim != 1:  # the protocol would read the channels as a batch of 2-sample clips
        raise EvalError(f"{path}: {wav.shape[1]} channels; the protocol's ASR path reads mono wavs only")
    if sr != SR:
        wav = scipy.signal.resample(wav, int(len(wav) * SR / sr))
    return wav


class TransformersWhisperASR:
    name = "transformers-whisper"
    lang = "en"

    def __init__(self, folder: str | Path, device: str = "cpu", label: str | None = None):
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        self.path = Path(folder).expanduser()
        self.config = check_hf_folder(self.path)
        self.large_v3 = is_large_v3(self.config)
        self.label = label or ("whisper-large-v3" if self.large_v3 else self.path.name)
        self.device = torch.device(device)
        try:
            self.processor = WhisperProcessor.from_pretrained(str(self.path), local_files_only=True)
            self.model = WhisperForConditionalGeneration.from_pretrained(
                str(self.path), local_files_only=True, dtype=torch.float32).to(self.device).eval()
        except (OSError, ValueError) as err:
            raise MissingWeightsError(f"transformers could not load {self.path}: {err}") from None
        self.truncated = 0

    def info(self) -> dict:
        import transformers

        return {"name": self.name, "version": transformers.__version__, "model": self.label,
                "checkpoint": str(self.path), "device": str(self.device), "dtype": "float32",
                "decoding": "greedy (generation_config defaults)", "language": "english",
                "resampling": "scipy.signal.resample", "truncated_30s": self.truncated,
                "protocol_path": True, "protocol_model": self.large_v3, "protocol_exact": self.large_v3,
                "protocol_note": "seed-tts-eval run_wer.py's transformers path"
                                 + ("" if self.large_v3 else "; the weights are not whisper-large-v3's")}

    def transcribe_files(self, paths) -> list[str]:
        """The protocol's path: each file read and resampled as run_wer.py does."""
        return self.transcribe([read_wav_16k(p) for p in paths])

    def transcribe(self, wavs) -> list[str]:
        """16 kHz mono waveforms, one at a time."""
        import torch

        texts = []
        for wav in wavs:
            self.truncated += len(wav) > 30 * SR
            features = self.processor(wav, sampling_rate=SR, return_tensors="pt").input_features.to(self.device)
            with torch.inference_mode():
                ids = self.model.generate(features, language="english", task="transcribe")
            texts.append(self.processor.batch_decode(ids, skip_special_tokens=True)[0])
        return texts
