"""DNSMOS (Microsoft's non-intrusive speech quality predictor) with the ONNX files that the PyPI
`speechmos` wheel carries, run by its own `speechmos.dnsmos.DNSMOS` on onnxruntime.

DNSMOS was trained on ratings of noise-suppressed speech (ITU-T P.835: signal SIG, background BAK,
overall OVRL; and a P.808 overall score): it says how clean and undistorted speech sounds, not how
natural a TTS voice is. It is not UTMOS, the naturalness predictor TTS papers report (docs/design.md
section 9). The headline `mos` is OVRL.
"""
from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import numpy as np

SR = 16000


class DNSMOSPredictor:
    name = "dnsmos"
    description = "DNSMOS P.835 OVRL (speechmos ONNX: sig_bak_ovr + P.808 model_v8)"

    def __init__(self):
        from speechmos import dnsmos

        models = Path(dnsmos.__file__).parent / "dnsmos_models"
        self.files = [models / "sig_bak_ovr.onnx", models / "model_v8.onnx"]
        self.model = dnsmos.DNSMOS(str(self.files[0]), str(self.files[1]))

    def info(self) -> dict:
        return {"name": self.name, "version": version("speechmos"), "model": self.description,
                "files": [p.name for p in self.files], "measures": "speech quality after noise suppression "
                "(P.835), not TTS naturalness; not comparable with UTMOS"}

    def score(self, wav: np.ndarray) -> dict:
        # speechmos refuses samples outside [-1, 1]; a generated wav may overshoot by a little
        wav = np.clip(np.asarray(wav, dtype=np.float32).reshape(-1), -1.0, 1.0)
        out = self.model(wav, SR, False)
        return {"mos": float(out["ovrl_mos"]), "sig": float(out["sig_mos"]), "bak": float(out["bak_mos"]),
                "p808": float(out["p808_mos"])}
