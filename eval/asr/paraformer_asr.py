"""Chinese ASR with funasr's paraformer-zh (SeACo-Paraformer) from a local model folder.

The protocol calls `AutoModel(model="paraformer-zh")`, which downloads
iic/speech_seaco_paraformer_large_asr_nat-zh-cn-16k-common-vocab8404-pytorch from ModelScope.
Offline, the same folder must be given. funasr answers a missing or unusable folder with
"model '...' is not registered" (it swallows its own import errors too), so the folder is checked
first and that message is replaced by one naming the expected files and any funasr import error.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from eval.errors import MissingWeightsError

MODELSCOPE_ID = "iic/speech_seaco_paraformer_large_asr_nat-zh-cn-16k-common-vocab8404-pytorch"
REQUIRED = ("config.yaml", "model.pt", "am.mvn")
TOKENS = ("tokens.json", "tokens.txt")
HOW = (f"Copy the ModelScope folder {MODELSCOPE_ID} (config.yaml, configuration.json, model.pt, "
       "tokens.json, seg_dict, am.mvn) to this machine and pass --paraformer DIR "
       "(or set VOXLAB_PARAFORMER).")


def default_paraformer_dirs() -> list[Path]:
    """Where a ModelScope download of paraformer-zh would be (newer and older cache layouts)."""
    root = Path(os.getenv("MODELSCOPE_CACHE", Path.home() / ".cache" / "modelscope" / "hub"))
    return [root / "models" / MODELSCOPE_ID, root / MODELSCOPE_ID]


def resolve_paraformer(folder: str | Path | None) -> Path:
    """The model folder to use, or MissingWeightsError naming what is missing where."""
    if folder is None:
        folder = os.getenv("VOXLAB_PARAFORMER")
    candidates = [Path(folder).expanduser()] if folder else default_paraformer_dirs()
    for cand in candidates:
        if cand.is_dir():
            missing = [f for f in REQUIRED if not (cand / f).is_file()]
            if not any((cand / t).is_file() for t in TOKENS):
                missing.append(" or ".join(TOKENS))
            if missing:
                raise MissingWeightsError(
                    f"paraformer-zh folder {cand} lacks {', '.join(missing)}. {HOW}")
            return cand
    where = " or ".join(str(c) for c in candidates)
    raise MissingWeightsError(f"paraformer-zh weights not found: expected a funasr model folder at "
                              f"{where}. {HOW}")


def _funasr_import_errors() -> str:
    """funasr imports its model modules quietly and drops the ones that fail; name those failures."""
    try:
        import funasr
        errors = funasr.get_import_errors()
    except Exception:  # noqa: BLE001 - only a hint for the message
        return ""
    relevant = {k: v for k, v in errors.items() if "paraformer" in k or "sanm" in k}
    if not relevant:
        return ""
    causes = sorted(set(relevant.values()))
    return (" funasr failed to import its paraformer code: " + "; ".join(causes)
            + " (install the missing package).")


def check_state_dict(model: torch.nn.Module, path: Path) -> None:
    """funasr skips missing or mis-shaped keys with a log line; refuse a partial load instead."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or shapes:
        raise MissingWeightsError(
            f"{path} does not match the model its config.yaml describes: "
            f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected "
            f"(e.g. {unexpected[:3]}), {len(shapes)} of another shape (e.g. {shapes[:3]}).")


class ParaformerASR:
    name = "funasr-paraformer-zh"
    lang = "zh"

    def __init__(self, folder: str | Path | None = None, device: str = "cpu", batch_size: int = 8):
        self.folder = resolve_paraformer(folder)
        self.device = device
        self.batch_size = max(1, int(batch_size))
        from funasr import AutoModel

        threads = torch.get_num_threads()  # AutoModel sets torch's thread count from `ncpu`
        try:
            self.model = AutoModel(model=str(self.folder), device=device, disable_update=True,
                                   disable_pbar=True, disable_log=True, log_level="ERROR",
                                   ncpu=threads, hub="ms")
        except (RuntimeError, KeyError, AssertionError) as err:
            if "not registered" not in str(err) and not isinstance(err, AssertionError):
                raise
            raise MissingWeightsError(
                f"funasr could not build a model from {self.folder} ({str(err).splitlines()[0]})."
                f"{_funasr_import_errors()} {HOW}") from None
        finally:
            torch.set_num_threads(threads)
        check_state_dict(self.model.model, self.folder / "model.pt")

    def info(self) -> dict:
        import funasr

        return {"name": self.name, "version": funasr.__version__, "model_dir": str(self.folder),
                "model_class": type(self.model.model).__name__, "device": str(self.device),
                "batch_size": self.batch_size, "hypothesis": "converted to simplified (zhconv)",
                "protocol_exact": False,
                "protocol_note": "the protocol's model, fed batched 16 kHz arrays instead of run_wer.py's file paths"}

    @torch.inference_mode()
    def transcribe(self, wavs: list[np.ndarray]) -> list[str]:
        texts: list[str] = []
        for start in range(0, len(wavs), self.batch_size):
            batch = [np.asarray(w, dtype=np.float32) for w in wavs[start:start + self.batch_size]]
            keys = [f"utt{start + i}" for i in range(len(batch))]
            res = self.model.generate(input=batch, key=keys, batch_size=len(batch))
            if not res:  # funasr returns nothing when no item of the batch has a token
                res = [{"text": ""} for _ in batch]
            if len(res) != len(batch):
                raise RuntimeError(f"funasr returned {len(res)} results for {len(batch)} inputs")
            texts.extend(str(r.get("text", "")).strip() for r in res)
        return texts
