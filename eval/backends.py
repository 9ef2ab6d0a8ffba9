"""Which ASR and SIM backends an evaluation uses, checked before any work and loaded once.

`check_backends` is the cheap preflight (files present, names valid) that runs before generation,
so that missing weights fail in seconds with one message naming every problem. `Backends` loads
each backend on first use and keeps it, so a callback evaluating at many steps loads them once.
The ASR policy (`EvalConfig.asr`, `--asr`, the training callback's `asr`) has one meaning
everywhere, read by `asr_skip_reason` alone: `required` fails before any work when the ASR weights
are missing (the default of `make eval`); `auto` scores WER when they are there and otherwise
records why not (WER null, SIM still scored: the default during training and in the demo);
`none` never runs ASR.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal, get_args

from eval.asr import resolve_english_asr
from eval.asr.faster_whisper_asr import FasterWhisperASR
from eval.asr.paraformer_asr import ParaformerASR, resolve_paraformer
from eval.asr.transformers_whisper_asr import TransformersWhisperASR
from eval.asr.whisper_asr import WhisperASR
from eval.errors import MissingWeightsError
from eval.mos import MOS_CHOICES
from eval.mos.dnsmos import DNSMOSPredictor
from eval.mos.utmos import UTMOSPredictor, resolve_utmos
from eval.normalize import VARIANTS
from eval.sim import SIM_CHOICES
from eval.sim.resemblyzer_sim import ResemblyzerSim
from eval.sim.wavlm_ecapa import WavLMEcapaSim, resolve_wavlm_ecapa
from eval.sim.wespeaker_sim import WespeakerSim, resolve_wespeaker

ASRPolicy = Literal["required", "auto", "none"]
ASR_POLICIES: tuple[str, ...] = get_args(ASRPolicy)
ASR_DISABLED = "ASR disabled (asr=none)"


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class EvalConfig:
    whisper: str = "auto"               # auto | bundled | transformers folder | whisper name | .pt | CTranslate2 folder (eval/asr)
    paraformer: str | None = None       # paraformer-zh folder (else $VOXLAB_PARAFORMER / ModelScope cache)
    asr: ASRPolicy = "required"         # whisper (en) / paraformer (zh): required | auto | none (asr_skip_reason)
    sim: str = "resemblyzer"            # none | resemblyzer | wavlm_ecapa | wespeaker
    wavlm: str | None = None            # transformers WavLM folder (wavlm_ecapa)
    ecapa: str | None = None            # wavlm_large_finetune.pth (wavlm_ecapa)
    wespeaker: str | None = None        # wespeaker folder with config.yaml + avg_model.pt
    mos: str = "none"                   # none | dnsmos | utmos (eval/mos)
    utmos: str | None = None            # UTMOS22 strong checkpoint (utmos)
    device: str = field(default_factory=default_device)
    asr_batch_size: int = 8
    lang: str = "auto"                  # en | zh | auto (per utterance: CJK in the target text -> zh)
    normalization: str = "seedtts"      # seedtts | f5tts | whisper

    def validate(self) -> None:
        if self.asr not in ASR_POLICIES:
            raise ValueError(f"asr must be one of {ASR_POLICIES}, got {self.asr!r}")
        if self.sim not in SIM_CHOICES:
            raise ValueError(f"sim must be one of {SIM_CHOICES}, got {self.sim!r}")
        if self.mos not in MOS_CHOICES:
            raise ValueError(f"mos must be one of {MOS_CHOICES}, got {self.mos!r}")
        if self.lang not in ("auto", "en", "zh"):
            raise ValueError(f"lang must be auto, en or zh, got {self.lang!r}")
        if self.normalization not in VARIANTS:
            raise ValueError(f"normalization must be one of {sorted(VARIANTS)}, got {self.normalization!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def check_backends(config: EvalConfig, asr_langs=("en", "zh"), sim: bool = True, mos: bool = True) -> None:
    """Raise one MissingWeightsError listing every backend whose weights are not where expected.
    `asr_langs`: languages that need ASR (none when transcripts are given)."""
    config.validate()
    problems = []

    def attempt(fn, *args):
        try:
            fn(*args)
        except MissingWeightsError as err:
            problems.append(str(err))

    if "en" in asr_langs:
        attempt(resolve_english_asr, config.whisper)
    if "zh" in asr_langs:
        attempt(resolve_paraformer, config.paraformer)
    if sim and config.sim == "wavlm_ecapa":
        attempt(resolve_wavlm_ecapa, config.wavlm, config.ecapa)
    elif sim and config.sim == "wespeaker":
        attempt(resolve_wespeaker, config.wespeaker)
    if mos and config.mos == "utmos":
        attempt(resolve_utmos, config.utmos)
    if problems:
        raise MissingWeightsError("\n".join(f"- {p}" for p in problems))


def asr_skip_reason(config: EvalConfig, langs) -> str | None:
    """The one reading of the ASR policy: why WER is not scored for `langs` (None: it is).
    `none`: ASR_DISABLED; `auto`: the missing ASR weights as one line (it goes into metrics.json),
    None when they are all there; `required`: None, so that `check_backends` fails on missing
    weights, naming them with every other missing backend."""
    config.validate()
    if config.asr == "none":
        return ASR_DISABLED
    if config.asr == "required" or not langs:
        return None
    try:
        check_backends(config, asr_langs=list(langs), sim=False, mos=False)
    except MissingWeightsError as err:  # check_backends lists problems as "- ..." lines
        return "; ".join(" ".join(line.removeprefix("- ").split()) for line in str(err).splitlines())
    return None


class Backends:
    """Loads each backend on first use and keeps it (pass one instance to many evaluations)."""

    def __init__(self, config: EvalConfig | None = None):
        self.config = config or EvalConfig()
        self.config.validate()
        self._asr: dict = {}
        self._sim = None
        self._mos = None

    def asr(self, lang: str):
        if lang not in self._asr:
            c = self.config
            if lang == "en":
                spec = resolve_english_asr(c.whisper)
                if spec.backend == "transformers":
                    self._asr[lang] = TransformersWhisperASR(spec.path, device=c.device, label=spec.label)
                elif spec.backend == "faster-whisper":
                    self._asr[lang] = FasterWhisperASR(spec.path, device=c.device, batch_size=c.asr_batch_size,
                                                       label=spec.label)
                else:
                    self._asr[lang] = WhisperASR(spec.model, device=c.device, batch_size=c.asr_batch_size)
            elif lang == "zh":
                self._asr[lang] = ParaformerASR(c.paraformer, device=c.device, batch_size=c.asr_batch_size)
            else:
                raise ValueError(f"no ASR backend for language {lang!r}")
        return self._asr[lang]

    def sim(self):
        c = self.config
        if c.sim == "none":
            return None
        if self._sim is None:
            if c.sim == "resemblyzer":
                self._sim = ResemblyzerSim(device=c.device)
            elif c.sim == "wavlm_ecapa":
                self._sim = WavLMEcapaSim(c.wavlm, c.ecapa, device=c.device)
            elif c.sim == "wespeaker":
                self._sim = WespeakerSim(c.wespeaker, device=c.device)
        return self._sim

    def mos(self):
        c = self.config
        if c.mos == "none":
            return None
        if self._mos is None:
            if c.mos == "dnsmos":
                self._mos = DNSMOSPredictor()
            else:
                self._mos = UTMOSPredictor(c.utmos, device=c.device)
        return self._mos
