"""Text-to-speech with a VoxCPM backbone: zero-shot and voice cloning, one utterance or a batch.

`TTSModel(backbone, vae, tokenizer)`; `generate(text, prompt_wav=None, prompt_text=None, cfg=2.0,
timesteps=10, temperature=1.0, seed=None, max_len=4096, retry_badcase=False, ...) -> (waveform [T],
sample_rate)`;
`generate_batch(texts, ...)` -> a list of those; `synthesize_batch` also returns the latents;
`generate_streaming(text, ..., chunk_patches=1)` yields waveform chunks as the patches are made.

The loop (the official VoxCPM-0.5B inference, voxcpm 2.0.3, made incremental and batched):
- prefix `[prompt text + text, 101, prompt patches]` (VoxCPM2 with a reference voice: `[103,
  reference patches, 104]` in front) through TSLM and RALM once, filling their KV caches (items of
  different lengths are left-padded, with an attention mask);
- per step: LocDiT condition from the last TSLM/RALM states -> one patch by the Euler sampler
  (`models.sampler`); the stop head on the same TSLM state says whether that patch is the last;
  LocEnc encodes the new patch, and only that position goes through TSLM and RALM (caches);
- length: at most min(int(6 * target text tokens + 10), max_len) patches; the stop head is obeyed
  from the 4th patch on (official `i > min_len` with min_len = 2);
- an item that stops leaves the batch (its cache rows are dropped); the others go on;
- VAE decode, item by item. With a prompt, the last min(2, prompt patches) prompt patches are
  decoded in front of the new ones as context and their audio is cut (the official keeps 2; it cuts 2 patches even
  for a 1-patch prompt, we cut what was put in front). That is the official prompt-cache path, the
  one the public `VoxCPM.generate` runs; the official `VoxCPMModel.generate` (no cache) keeps the
  context audio, so its cloned waveforms are 2 patches longer, the same samples after them.
Text is cleaned as the official `VoxCPM.generate` does (newlines and runs of whitespace -> one
space); the prompt text is prepended as a string, then tokenised with the target text.
`generate` (one utterance) warns (`TextWarning`) about characters the vocabulary lacks (read
as <unk> or dropped) and when the length cap, not the stop head, ended the audio; it refuses a
text with no known character.

Bad-case retry (`retry_badcase`, off by default; the official `VoxCPM.generate` has it on): an item
whose patches, counting the prompt context patches as the official does, reach
`retry_badcase_ratio_threshold` x its target tokens is generated again, with its noise generator
going on, up to `retry_badcase_max_times` runs in all; the last run is kept. The ratio also sets
the length cap above (int(ratio x tokens + 10)), retry or not. At temperature 0 a run would repeat
itself, so nothing is retried. `Synthesis.attempts` says how many runs an item took.
"""
from __future__ import annotations

import logging
import math
import re
import unicodedata
import warnings
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from models.audiovae import AudioVAE
from models.cpu_linear import bf16_packing_available, pack_linears, quantize_linears
from models.cpu_memory import keep_large_blocks
from models.packing import to_patches
from models.sampler import PatchSampler, draw_noise
from models.voxcpm import VoxCPMBackbone
from voxlab.audio import load_audio, sample_problem

LENGTH_RATIO, LENGTH_PAD = 6.0, 10   # official cap: int(target tokens * 6.0 + 10) patches
RETRY_MAX_TIMES = 3                   # official retry_badcase_max_times (runs in all)
MIN_LEN = 2                           # official: the stop head counts once the step index is > 2
CONTEXT_PATCHES = 2                   # prompt patches decoded in front of a cloned voice (VoxCPM2: 3)
REF_START_ID, REF_END_ID = 103, 104   # VoxCPM2: around an isolated reference segment
PRECISIONS = ("float32", "bfloat16", "float16", "int8")  # TTSModel.set_precision
PROMPT_CACHE = 512                    # prompt files whose latent patches a model keeps (a few kB each)
log = logging.getLogger(__name__)


@dataclass
class Synthesis:
    wav: torch.Tensor            # [T] float32, CPU
    sample_rate: int
    patches: torch.Tensor        # generated latent patches [n, P, D], CPU
    stopped: bool                # True: the stop head ended it; False: the length cap did
    text_ids: list[int] = field(default_factory=list)
    attempts: int = 1            # runs made (more than 1: bad-case retries)


@dataclass
class PromptLatents:
    """A prompt given as latent patches [n, P, D] in place of a wav: nothing is encoded (a VoxCPM2
    backbone whose AudioVAE V2 VoxLab cannot build yet; tests feeding the official path the same
    latents). Its audio would still be decoded as context in front of a cloned voice."""
    patches: torch.Tensor


MAX_CFG, MAX_TEMPERATURE = 10.0, 5.0  # beyond these the output is noise at full scale, not speech


def check_settings(cfg: float, timesteps: int, temperature: float, max_len: int) -> None:
    """Generation settings a run can use, else ValueError naming the setting."""
    import math
    from numbers import Integral, Real

    if not (isinstance(cfg, Real) and math.isfinite(cfg) and 0 <= cfg <= MAX_CFG):
        raise ValueError(f"cfg={cfg!r}: guidance must be a number from 0 to {MAX_CFG:g} (the official default is 2)")
    if not (isinstance(temperature, Real) and math.isfinite(temperature) and 0 <= temperature <= MAX_TEMPERATURE):
        raise ValueError(f"temperature={temperature!r}: must be a number from 0 (deterministic) to {MAX_TEMPERATURE:g}")
    for name, value in (("timesteps", timesteps), ("max_len", max_len)):
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
            raise ValueError(f"{name}={value!r}: must be a whole number of at least 1")


class TextWarning(UserWarning):
    """The audio may not say the text: unknown characters, or a cut by the length cap."""


def clean_text(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("\n", " "))


class TTSModel(nn.Module):
    def __init__(self, backbone: VoxCPMBackbone, vae: AudioVAE, tokenizer):
        super().__init__()
        if backbone.feat_dim != vae.latent_dim:
            raise ValueError(f"backbone feat_dim {backbone.feat_dim} != VAE latent_dim {vae.latent_dim}")
        self.backbone, self.vae, self.tokenizer = backbone, vae, tokenizer
        self.eval()

    @property
    def sample_rate(self) -> int:
        """The output rate (the AudioVAE V2 decodes at a higher rate than it encodes)."""
        return int(self.vae.out_sample_rate)

    @property
    def input_sample_rate(self) -> int:
        """The rate prompts and references are read at (the VAE encoder's)."""
        return int(self.vae.sample_rate)

    @property
    def context_patches(self) -> int:
        """Prompt patches decoded in front of a continuation: official VoxCPM2 min(3, prompt), VoxCPM 2."""
        return 3 if self.backbone.is_voxcpm2 else CONTEXT_PATCHES

    def _context(self, item: dict) -> torch.Tensor | None:
        """The latent patches decoded in front of a continuation (None without a prompt). VoxCPM2
        takes the last audio positions of its prefix, so a prompt shorter than 3 patches after a
        reference takes reference patches too (official `_inference`)."""
        if item["prompt"] is None:
            return None
        audio = item["prompt"] if item.get("reference") is None else torch.cat([item["reference"], item["prompt"]])
        return audio[-self.context_patches:]

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    def optimize(self, lms: bool = False) -> "TTSModel":
        """CPU: pre-packed oneDNN weights for the many-row Linear calls (LocEnc, LocDiT; the LMs too
        with `lms=True`, useful for large batches, at the cost of a second copy of their weights),
        and glibc malloc told to keep large freed blocks (models.cpu_memory: the AudioVAE's big
        activations otherwise page-fault anew at every call; process-wide)."""
        if self.device.type == "cpu":
            keep_large_blocks()

        bb = self.backbone
        for part in (bb.feat_encoder, bb.feat_decoder) + ((bb.base_lm, bb.residual_lm) if lms else ()):
            if part is not None:
                pack_linears(part)
        return self

    def with_precision(self, precision: str | torch.dtype) -> "TTSModel":
        """A copy whose backbone is in `precision` (set_precision; this model's stays as it is),
        sharing this model's AudioVAE, tokenizer and kept prompt latents (their keys hold the dtype)."""
        copy = TTSModel(deepcopy(self.backbone), self.vae, self.tokenizer)
        copy.__dict__["_prompt_cache"] = self.__dict__.setdefault("_prompt_cache", {})
        return copy.set_precision(precision)

    def set_vae_precision(self, precision: str | torch.dtype) -> "TTSModel":
        """The AudioVAE's weights for inference: "float32" (the default, as the official code keeps
        it) or "bfloat16" (on a CPU with AVX512-BF16 about 2x faster encoding and decoding: half of a
        batched evaluation's time; waveforms rounded, see docs/benchmarks.md, Generation speed). Prompts are
        encoded and latents decoded in that dtype; what the model returns stays float32."""
        name = str(precision).replace("torch.", "")
        if name not in ("float32", "bfloat16"):
            raise ValueError(f"vae dtype {precision!r}: choose float32 or bfloat16")
        self.vae.to(getattr(torch, name))
        return self

    def set_precision(self, precision: str | torch.dtype) -> "TTSModel":
        """Backbone weights for inference: "float32"; "bfloat16" (the whole backbone; on CPU with
        pre-packed oneDNN weights for every Linear); "int8" (CPU: the Linear layers of the four
        transformer stacks as int8 weights with dynamic int8 inputs, models.cpu_linear; the
        projections, norms and embeddings stay float32). The VAE stays float32. Irreversible for int8."""
        name = str(precision).replace("torch.", "")
        if name not in PRECISIONS:
            raise ValueError(f"dtype {precision!r}: choose one of {', '.join(PRECISIONS)}")
        bb, cpu = self.backbone, self.device.type == "cpu"
        if name == "int8":
            if not cpu:
                raise ValueError("dtype int8 runs on CPU only (its kernel is fbgemm's); use bfloat16 on a GPU")
            stacks = [bb.base_lm, bb.residual_lm, bb.feat_encoder, bb.feat_decoder.estimator.decoder]
            for stack in stacks:
                if stack is not None:
                    quantize_linears(stack, min_weight=0)
            return self
        bb.to(getattr(torch, name))
        if cpu and name == "bfloat16":
            if not bf16_packing_available():
                log.warning("this CPU has no bfloat16 instructions (AVX512-BF16 or AVX-NE-CONVERT): bfloat16 "
                            "weights run slower than float32 on it (docs/benchmarks.md, Generation speed); int8 is the "
                            "faster reduced precision here")
            pack_linears(bb, min_weight=0)
        return self

    def item_memory(self, text: str, prompt_text: str | None = None, prompt_seconds: float = 0.0,
                    max_len: int = 4096) -> int:
        """Estimated bytes one utterance adds to a batch (for choosing batch sizes): its KV-cache rows
        in both LMs (prefix + the length cap); the per-patch LocDiT work is small beside these."""
        bb = self.backbone
        ids, prompt, cap = self._memory_lengths(text, prompt_text, prompt_seconds, max_len)
        elem = torch.finfo(self._dtype).bits // 8
        per_position = sum(2 * lm.config.num_hidden_layers * lm.config.num_key_value_heads * lm.config.head_dim * elem
                           for lm in (bb.base_lm, bb.residual_lm) if lm is not None)
        return per_position * (ids + 1 + prompt + cap)

    def decode_memory(self, text: str, prompt_text: str | None = None, prompt_seconds: float = 0.0,
                      max_len: int = 4096) -> int:
        """Estimated bytes of decoding one utterance: three live tensors of the VAE decoder's widest
        layer (channels x samples). Items are decoded one at a time, so a batch needs its
        largest item's, once."""
        _, prompt, cap = self._memory_lengths(text, prompt_text, prompt_seconds, max_len)
        frames = (cap + min(self.context_patches, prompt)) * self.backbone.patch_size
        return 3 * self.vae.decode_bytes_per_frame() * frames

    def _memory_lengths(self, text, prompt_text, prompt_seconds, max_len) -> tuple[int, int, int]:
        """(prefix text ids, prompt patches, length cap) of an utterance."""
        bb, vae = self.backbone, self.vae
        target = len(self.encode_text(clean_text(text)))
        ids = len(self.encode_text(clean_text((prompt_text or "") + text)))
        prompt = math.ceil(prompt_seconds * self.input_sample_rate / (bb.patch_size * vae.hop_length))
        return ids, prompt, min(int(target * LENGTH_RATIO + LENGTH_PAD), max_len)

    # ---- inputs -----------------------------------------------------------------------------------
    def encode_text(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text))

    def prompt_patches(self, wav, pad: str = "left") -> torch.Tensor:
        """Prompt audio (a path, or samples at the model's rate) -> latent patches [n, P, D].
        Left-padded to whole patches, so the real audio ends right before the target. A path's
        patches are kept (the last PROMPT_CACHE files, keyed by path, size, mtime and the VAE's
        weights and the backbone's dtype): an evaluation during training clones the same prompt
        voices at every checkpoint with the same VAE, and encoding them is a large share of it."""
        if isinstance(wav, PromptLatents):
            p, d = self.backbone.patch_size, self.backbone.feat_dim
            if wav.patches.dim() != 3 or tuple(wav.patches.shape[1:]) != (p, d) or not len(wav.patches):
                raise ValueError(f"PromptLatents: patches must be [n >= 1, {p}, {d}], got {tuple(wav.patches.shape)}")
            return wav.patches.to(self.device, self._dtype)
        if not isinstance(wav, (str, Path)):
            return self._encode_prompt(wav, pad)
        try:
            stat = Path(wav).stat()
        except OSError:  # load_audio says what is wrong with it
            return self._encode_prompt(load_audio(wav, self.input_sample_rate, mono="mix"), pad)
        vae_state = tuple((t.data_ptr(), t._version) for t in self.vae.parameters())
        key = (str(Path(wav).resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, vae_state, self._dtype,
               self.device, pad)  # ctime: a file rewritten in place with its old size and mtime is still new
        cache = self.__dict__.setdefault("_prompt_cache", {})
        if key not in cache:
            cache[key] = self._encode_prompt(load_audio(wav, self.input_sample_rate, mono="mix"), pad)
            while len(cache) > PROMPT_CACHE:
                cache.pop(next(iter(cache)))
        return cache[key]

    def forget_prompts(self) -> None:
        """Drop the kept prompt latents (benchmarks timing a first evaluation)."""
        self.__dict__.pop("_prompt_cache", None)

    def _encode_prompt(self, wav, pad: str = "left") -> torch.Tensor:
        wav = torch.as_tensor(np.asarray(wav, dtype=np.float32) if not torch.is_tensor(wav) else wav).float()
        wav = wav.reshape(-1)
        if wav.numel() == 0:
            raise ValueError("prompt audio is empty")
        problem = sample_problem(wav)
        if problem:
            raise ValueError(f"prompt audio: {problem}")
        p = self.backbone.patch_size
        extra = -wav.numel() % (p * self.vae.hop_length)  # a reference is padded on the right (official)
        wav = F.pad(wav, (extra, 0) if pad == "left" else (0, extra))
        z = self.vae.encode(wav.to(self.device, self._vae_dtype).view(1, 1, -1)).float()  # [1, D, frames]
        return to_patches(z[0].t(), p).to(self._dtype)

    @property
    def _dtype(self) -> torch.dtype:
        return next(self.backbone.parameters()).dtype

    @property
    def _vae_dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    # ---- generation -------------------------------------------------------------------------------
    @torch.inference_mode()
    def synthesize_batch(self, texts: Sequence[str], prompt_wavs: Sequence | None = None,
                         prompt_texts: Sequence[str | None] | None = None, cfg: float = 2.0, timesteps: int = 10,
                         temperature: float = 1.0, seed: int | Sequence[int] | None = None,
                         max_len: int | Sequence[int] = 4096, min_len: int = MIN_LEN, stop: bool = True,
                         retry_badcase: bool = False, retry_badcase_max_times: int = RETRY_MAX_TIMES,
                         retry_badcase_ratio_threshold: float = LENGTH_RATIO,
                         reference_wavs: Sequence | None = None) -> list[Synthesis]:
        """Synthesise every text; item i uses seed + i (or seed[i]) and max_len (or max_len[i]);
        `stop=False` ignores the stop head (every item runs to its length cap: benchmarks, or a
        duration fixed per item); retry_badcase: see the module doc. `reference_wavs` (VoxCPM2 only):
        per item None or a reference voice, read as an isolated segment `[103, its patches, 104]`
        in front of the text; with a prompt too, the prompt is continued after it (the official
        reference and reference + continuation modes)."""
        n = len(texts)
        max_lens = list(max_len) if isinstance(max_len, (list, tuple)) else [max_len] * n
        if len(max_lens) != n:
            raise ValueError(f"{n} texts but {len(max_lens)} max_len values")
        for cap in max_lens or [4096]:
            check_settings(cfg, timesteps, temperature, cap)
        if n == 0:
            return []
        prompt_wavs = list(prompt_wavs) if prompt_wavs is not None else [None] * n
        prompt_texts = list(prompt_texts) if prompt_texts is not None else [None] * n
        if not (len(prompt_wavs) == len(prompt_texts) == n):
            raise ValueError(f"{n} texts but {len(prompt_wavs)} prompt wavs and {len(prompt_texts)} prompt texts")
        if retry_badcase and retry_badcase_max_times < 1:
            raise ValueError(f"retry_badcase_max_times must be at least 1, got {retry_badcase_max_times}")
        refs = list(reference_wavs) if reference_wavs is not None else [None] * n
        if len(refs) != n:
            raise ValueError(f"{n} texts but {len(refs)} reference wavs")
        items = [self._prepare(t, w, pt, r) for t, w, pt, r in zip(texts, prompt_wavs, prompt_texts, refs)]
        ratio = float(retry_badcase_ratio_threshold)
        caps = [min(int(len(it["target_ids"]) * ratio + LENGTH_PAD), cap) for it, cap in zip(items, max_lens)]
        if seed is None:
            gens = None
        else:
            seeds = [seed + i for i in range(n)] if isinstance(seed, int) else list(seed)
            gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        runs = retry_badcase_max_times if retry_badcase and temperature != 0 else 1
        patches, stopped, attempts = [None] * n, [False] * n, [0] * n
        todo = list(range(n))
        while todo:  # the first run, then the bad cases again
            got, halted = self._generate_patches([items[i] for i in todo], [caps[i] for i in todo], cfg, timesteps,
                                                 temperature, None if gens is None else [gens[i] for i in todo],
                                                 min_len, stop)
            for i, p, h in zip(todo, got, halted):
                patches[i], stopped[i], attempts[i] = p, h, attempts[i] + 1
            todo = [i for i in todo if attempts[i] < runs and self._bad_case(items[i], patches[i], ratio)]
            if todo:
                log.info("bad case (patches >= %.1f x text tokens): generating %d item(s) again", ratio, len(todo))
        wavs = self._decode(items, patches)
        return [Synthesis(w, self.sample_rate, p.cpu(), s, it["ids"], a)
                for w, p, s, it, a in zip(wavs, patches, stopped, items, attempts)]

    def generate_batch(self, texts: Sequence[str], prompt_wavs=None, prompt_texts=None, **kw) -> list:
        """[(waveform [T], sample_rate), ...], one per text (see `synthesize_batch`)."""
        return [(s.wav, s.sample_rate) for s in self.synthesize_batch(texts, prompt_wavs, prompt_texts, **kw)]

    def generate(self, text: str, prompt_wav=None, prompt_text: str | None = None, cfg: float = 2.0,
                 timesteps: int = 10, temperature: float = 1.0, seed: int | None = None, max_len: int = 4096,
                 reference_wav=None, **kw) -> tuple[torch.Tensor, int]:
        """One utterance -> (waveform as a 1-D float tensor, sample rate)."""
        self.check_text(text)
        s = self.synthesize_batch([text], [prompt_wav], [prompt_text], cfg=cfg, timesteps=timesteps,
                                  temperature=temperature, seed=seed, max_len=max_len,
                                  reference_wavs=[reference_wav], **kw)[0]
        if not s.stopped and kw.get("stop", True):
            self._warn_cut(text, len(s.patches), max_len, float(kw.get("retry_badcase_ratio_threshold", LENGTH_RATIO)))
        return s.wav, s.sample_rate

    @torch.inference_mode()
    def generate_streaming(self, text: str, prompt_wav=None, prompt_text: str | None = None, cfg: float = 2.0,
                           timesteps: int = 10, temperature: float = 1.0, seed: int | None = None,
                           max_len: int = 4096, chunk_patches: int = 1, min_len: int = MIN_LEN,
                           stop: bool = True, reference_wav=None) -> Iterator[torch.Tensor]:
        """One utterance as waveform chunks [chunk_patches x P x hop samples, the last maybe shorter],
        each yielded as soon as its patches are made. The causal VAE decodes each chunk once, carrying
        its layers' left context (AudioVAE.stream_decoder), so the joined chunks are `generate`'s
        waveform with the same settings (no bad-case retry: a chunk once yielded is final). A VAE
        with lookahead (the iSTFT decoder holds back n_fft - stft_hop samples) yields a first chunk
        that much shorter and the held-back samples as a last chunk."""
        if chunk_patches < 1:
            raise ValueError(f"chunk_patches must be at least 1, got {chunk_patches}")
        check_settings(cfg, timesteps, temperature, max_len)
        self.check_text(text)
        item = self._prepare(text, prompt_wav, prompt_text, reference_wav)
        cap = min(int(len(item["target_ids"]) * LENGTH_RATIO + LENGTH_PAD), max_len)
        gens = None if seed is None else [torch.Generator().manual_seed(int(seed))]
        decoder = self.vae.stream_decoder()
        vae_dtype = self._vae_dtype
        drop = 0  # samples of the prompt context still to cut (a decoder may hold some back)

        def decode(patches: list[torch.Tensor] | None) -> torch.Tensor:
            nonlocal drop
            if patches is None:  # the end: what the decoder held back (an iSTFT head's overlap)
                wav = decoder.flush()[0, 0].float().cpu()
            else:
                z = torch.cat(patches).reshape(-1, self.backbone.feat_dim).t()[None]  # [1, D, frames]
                wav = decoder.push(z.to(vae_dtype))[0, 0].float().cpu()
            cut = min(drop, wav.numel())
            drop -= cut
            return wav[cut:]

        if item["prompt"] is not None:  # context in front, its audio dropped (as `generate` cuts it)
            context = list(self._context(item))
            drop = len(context) * self.backbone.patch_size * self.vae.out_hop_length
            decode(context)
        pending, made, stopped = [], 0, False
        for step in self._patch_steps([item], [cap], cfg, timesteps, temperature, gens, min_len, stop):
            _, patch, stopped = step[0]
            pending.append(patch[None])
            made += 1
            if len(pending) == chunk_patches:
                yield decode(pending)
                pending = []
        if pending:
            yield decode(pending)
        tail = decode(None)
        if tail.numel():
            yield tail
        if not stopped and stop:
            self._warn_cut(text, made, max_len, LENGTH_RATIO)

    def _warn_cut(self, text: str, patches: int, max_len: int, ratio: float) -> None:
        own = int(len(self.encode_text(clean_text(text))) * ratio + LENGTH_PAD)
        why = f"max_len={max_len}" if max_len < own else f"the text-length rule ({ratio:g} x tokens + {LENGTH_PAD})"
        warnings.warn(TextWarning(f"the length cap of {patches} patches, set by {why}, ended the audio "
                                  "before the model's stop head did: the speech may be cut off"), stacklevel=3)

    def check_text(self, text: str) -> list[str]:
        """Warn about characters the tokenizer cannot write; refuse a text with no known one.
        Returns the unknown characters (each occurrence)."""
        if not isinstance(text, str) or not text.strip():
            return []  # _prepare says it is empty
        finder = getattr(self.tokenizer, "unknown", None)
        unknown = finder(clean_text(text)) if finder else []
        if not unknown:
            return []
        first = list(dict.fromkeys(unknown))[:8]
        shown = " ".join(repr(c) for c in first)
        bad = set(unknown)
        if all(c.isspace() or c in bad for c in unicodedata.normalize("NFC", clean_text(text))):
            raise ValueError(f"text {text!r} has no character the model's vocabulary knows (unknown: {shown}): "
                             "nothing the model knows would be synthesised")
        more = " ..." if len(bad) > len(first) else ""
        warnings.warn(TextWarning(f"{len(unknown)} character(s) of the text are not in the model's vocabulary "
                                  f"(read as <unk> or dropped): {shown}{more}"), stacklevel=3)
        return unknown

    # ---- internals --------------------------------------------------------------------------------
    def _prepare(self, text: str, prompt_wav, prompt_text: str | None, reference_wav=None) -> dict:
        if not isinstance(text, str) or not text.strip():
            raise ValueError("text is empty: nothing to synthesise")
        has_wav = prompt_wav is not None and not (isinstance(prompt_wav, str) and prompt_wav == "")
        has_text = prompt_text is not None and prompt_text.strip() != ""
        if has_wav and not has_text:
            raise ValueError("a prompt wav needs its prompt text (the transcript of the prompt audio)")
        if has_text and not has_wav:
            raise ValueError("a prompt text needs its prompt wav (the audio it transcribes)")
        text = clean_text(text)
        target_ids = self.encode_text(text)
        if not target_ids:
            raise ValueError(f"text {text!r} has no token the tokenizer knows")
        ids = self.encode_text(prompt_text + text) if has_wav else target_ids
        prompt = self.prompt_patches(prompt_wav) if has_wav else None
        reference = None
        if reference_wav is not None and not (isinstance(reference_wav, str) and reference_wav == ""):
            if not self.backbone.is_voxcpm2:
                raise ValueError("a reference wav needs a VoxCPM2 model (tokens 103/104); this one is VoxCPM: "
                                 "clone with prompt_wav and prompt_text")
            reference = self.prompt_patches(reference_wav, pad="right")
        return {"ids": ids, "target_ids": target_ids, "prompt": prompt, "reference": reference}

    def _bad_case(self, item: dict, patches: torch.Tensor, ratio: float) -> bool:
        """The official test: VoxCPM counts the prompt context patches in front, VoxCPM2 does not."""
        context = 0 if item["prompt"] is None else min(self.context_patches, len(item["prompt"]))
        if self.backbone.is_voxcpm2:
            context = 0
        return len(patches) + context >= len(item["target_ids"]) * ratio

    def _prefix(self, items: list[dict]) -> dict:
        """Left-padded prefix batch `[103, reference patches, 104]` (VoxCPM2, when given) `[ids, 101,
        prompt patches]`; the reference tokens are text positions, its patches audio positions."""
        bb, dev, dtype = self.backbone, self.device, self._dtype
        p, d = bb.patch_size, bb.feat_dim
        layouts = [self._layout(it) for it in items]
        lens = [len(tok) for tok, _, _ in layouts]
        b, s = len(items), max(lens)
        out = {"text_tokens": torch.zeros(b, s, dtype=torch.long), "text_mask": torch.zeros(b, s, dtype=torch.bool),
               "audio_feats": torch.zeros(b, s, p, d, dtype=dtype, device=dev),
               "audio_mask": torch.zeros(b, s, dtype=torch.bool), "attention_mask": torch.zeros(b, s, dtype=torch.bool)}
        for i, ((tok, text, feats), n) in enumerate(zip(layouts, lens)):
            start = s - n
            out["text_tokens"][i, start:] = tok
            out["text_mask"][i, start:] = text
            out["audio_mask"][i, start:] = ~text
            out["audio_feats"][i, start:] = feats
            out["attention_mask"][i, start:] = True
        out = {k: v.to(dev) for k, v in out.items()}
        if min(lens) == s:  # no padding: the plain causal path
            out["attention_mask"] = None
        return out

    def _layout(self, it: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One item's prefix: token ids [n] (0 at patches), text flags [n], patches [n, P, D] (0 at text)."""
        bb = self.backbone
        def blank(k):
            return torch.zeros(k, bb.patch_size, bb.feat_dim, dtype=self._dtype, device=self.device)
        parts = []  # (token ids, is text, patches)
        if it.get("reference") is not None:
            ref = it["reference"]
            parts += [([REF_START_ID], True, blank(1)), ([0] * len(ref), False, ref), ([REF_END_ID], True, blank(1))]
        ids = list(it["ids"]) + [bb.audio_start_id]
        parts.append((ids, True, blank(len(ids))))
        if it["prompt"] is not None:
            parts.append(([0] * len(it["prompt"]), False, it["prompt"]))
        tok = torch.tensor([t for ids_, _, _ in parts for t in ids_], dtype=torch.long)
        text = torch.cat([torch.full((len(ids_),), flag) for ids_, flag, _ in parts])
        return tok, text, torch.cat([f for _, _, f in parts])

    def _generate_patches(self, items, caps, cfg, timesteps, temperature, gens, min_len, stop):
        out: list[list[torch.Tensor]] = [[] for _ in items]
        stopped = [False] * len(items)
        for step in self._patch_steps(items, caps, cfg, timesteps, temperature, gens, min_len, stop):
            for item, patch, halted in step:
                out[item].append(patch)
                stopped[item] = stopped[item] or halted
        return [torch.stack(p) for p in out], stopped

    def _patch_steps(self, items, caps, cfg, timesteps, temperature, gens, min_len, stop):
        """The generation loop: yields, at each step, [(item, patch [P, D], stopped by the head)]
        for every item still running (an item's last patch comes with its stop flag)."""
        bb = self.backbone
        prefix = self._prefix(items)
        b, s = prefix["text_tokens"].shape
        caches = bb.new_caches(b, s + max(caps), device=self.device, dtype=self._dtype)
        lm_h, res_h = bb.prefill(prefix["text_tokens"], prefix["text_mask"], prefix["audio_feats"],
                                 prefix["audio_mask"], caches, attention_mask=prefix["attention_mask"])
        prev = prefix["audio_feats"][:, -1]  # zeros after 101; the last prompt patch when cloning
        sampler = PatchSampler(bb.feat_decoder.estimator, timesteps, cfg, dtype=self._dtype, device=self.device)
        active = list(range(b))  # batch row -> item
        for i in range(max(caps)):
            noise = draw_noise(len(active), bb.patch_size, bb.feat_dim, temperature,
                               None if gens is None else [gens[j] for j in active], self._dtype, self.device)
            patch = sampler(bb.dit_condition(lm_h, res_h), prev, noise)
            says_stop = (bb.stop_logits(lm_h).argmax(-1) == 1).tolist() if stop else [False] * len(active)
            keep, made = [], []
            for row, item in enumerate(active):
                halted = i > min_len and says_stop[row]
                made.append((item, patch[row], halted))
                if not halted and i + 1 < caps[item]:
                    keep.append(row)
            yield made
            if not keep:
                return
            if len(keep) < len(active):  # finished items leave the batch
                idx = torch.tensor(keep, device=self.device)
                for cache in caches.values():
                    if cache is not None:
                        cache.select(idx)
                patch = patch[idx]
                active = [active[r] for r in keep]
            lm_h, res_h = bb.step(patch, caches)
            prev = patch

    def _decode(self, items: list[dict], patches: list[torch.Tensor]) -> list[torch.Tensor]:
        """VAE decode of each item (context patches in front when cloning), one at a time: the
        decoder's activations are large (channels x samples), and on CPU a batch of them decodes
        slower per item than one item does (measured: 0.93 against 0.58 s per item at 16 x 1 s)."""
        per_patch = self.backbone.patch_size * self.vae.out_hop_length  # output samples
        vae_dtype = self._vae_dtype
        out = []
        for it, gen in zip(items, patches):
            ctx = self._context(it) if it["prompt"] is not None else gen[:0]
            z = torch.cat([ctx, gen]).reshape(-1, gen.shape[-1]).t()[None]  # [1, D, frames]
            out.append(self.vae.decode(z.to(vae_dtype))[0, 0, len(ctx) * per_patch:].float().cpu())
        return out

