"""Faster Linear layers for CPU inference: oneDNN pre-packed weights, and int8 weights.

Why: the LocDiT runs 9-10 times per patch on 2 x 5 tokens and the LocEnc on 3 tokens. For such
row counts (2..~64) MKL's sgemm is several times slower per weight byte than its matrix-vector
path (measured here on an AMD EPYC: 10 rows x 4096 x 1024 at 2 GB/s vs 10 GB/s for one row), while
oneDNN with a weight packed once for the machine runs 1.5-2x faster. One-row calls (the LM steps)
stay on F.linear, which is the fastest there.

`pack_linears(module)` patches every nn.Linear below `module` of at least MIN_PACKED_WEIGHT
weights in place: parameters, names and
state_dict are unchanged (the packed copy is a plain attribute, not saved), and the packed path is
taken only for CPU inputs without autograd: float32 with more than one row, or bfloat16 (any rows:
oneDNN's packed bf16 kernel beats F.linear's bf16 path even for one row, measured here); anything
else (GPU, training) uses F.linear. A weight changed in place after packing (load_state_dict, an
optimizer step) is re-packed on its next call. `unpack_linears(module)` undoes it.

`quantize_linears(module)` replaces every large nn.Linear with `Int8Linear`: int8 weights
(symmetric, one scale per output row) run by fbgemm's dynamic-quantisation kernel, which also
rounds each call's input to int8 (one scale per call) and accumulates in int32 (AVX512-VNNI). That
reads a quarter of the fp32 bytes. Measured here, a weight-only int8 kernel
(torch._weight_int8pack_mm) was slower than fp32 with fp32 inputs and than bf16 with bf16 ones, so
it is not used. Inference only: the float weights are dropped.
"""
from __future__ import annotations

import functools
import os
import types
import warnings
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

# Below about 512 x 1024 weights the oneDNN call overhead outweighs the gain (measured): keep F.linear.
MIN_PACKED_WEIGHT = 1 << 19


def available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


@functools.cache
def bf16_packing_available() -> bool:
    """oneDNN packs bf16 weights only on CPUs with bf16 instructions (AVX512-BF16, AVX-NE-CONVERT);
    on others (AVX2 only) its reorder raises, so bf16 layers stay on F.linear there."""
    return available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def cpu_summary() -> str:
    """The CPU's vector level and whether oneDNN has bf16 instructions on it: the bf16 and int8
    ratios depend on both (without bf16 instructions bf16 weights run slower than fp32)."""
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.is_file() else []
    name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown CPU")
    bf16 = "with" if bf16_packing_available() else "without"
    return f"{name}, {os.cpu_count()} cores, {torch.backends.cpu.get_cpu_capability()}, {bf16} bf16 instructions"


def _packed_path(x: torch.Tensor, w: torch.Tensor) -> bool:
    if x.device.type != "cpu" or x.dtype != w.dtype or x.requires_grad or torch.is_grad_enabled():
        return False
    if x.dtype == torch.bfloat16:  # a layer packed in float32, then cast to bf16 (model.bfloat16())
        return bf16_packing_available()
    return x.dtype == torch.float32 and x.numel() > x.shape[-1]


def _forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    w = self.weight
    if not _packed_path(x, w):
        return F.linear(x, w, self.bias)
    key = (w.data_ptr(), w._version)
    if getattr(self, "_packed_key", None) != key:
        self._packed_weight = torch.ops.mkldnn._reorder_linear_weight(w.detach(), None)
        self._packed_key = key
    return torch.ops.mkldnn._linear_pointwise(x, self._packed_weight, self.bias, "none", [], "")


def pack_linears(module: nn.Module, min_weight: int | None = None) -> int:
    """Use packed weights for every nn.Linear below `module` of at least `min_weight` weights (default
    MIN_PACKED_WEIGHT; 0 for bf16 models: F.linear's bf16 path is slow at every size here); returns
    how many were patched."""
    if not available():
        return 0
    min_weight = MIN_PACKED_WEIGHT if min_weight is None else min_weight
    n = 0
    for m in module.modules():
        if (type(m) is nn.Linear and "forward" not in m.__dict__ and m.weight.numel() >= min_weight
                and (bf16_packing_available() or m.weight.dtype != torch.bfloat16)):
            m.forward = types.MethodType(_forward, m)
            n += 1
    return n


def unpack_linears(module: nn.Module) -> None:
    for m in module.modules():
        if type(m) is nn.Linear and "forward" in m.__dict__:
            del m.forward
            for attr in ("_packed_weight", "_packed_key"):
                m.__dict__.pop(attr, None)


def _has_vnni() -> bool:
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


# Without VNNI, fbgemm's u8 x s8 pair sums saturate at int16 unless inputs use 7 bits (torch's default).
REDUCE_RANGE = not _has_vnni()


class Int8Linear(nn.Module):
    """y = x W^T + b with W stored as int8 [out, in] plus a float scale per output row (CPU).
    Built from one nn.Linear, or from several reading the same input (their outputs concatenated:
    one kernel call instead of several; the rows and their scales are the same as apart, and the
    input gets the same one scale, so the outputs are bitwise those of the separate layers)."""

    def __init__(self, *linears: nn.Linear):
        super().__init__()
        if not linears or len({m.in_features for m in linears}) != 1:
            raise ValueError("Int8Linear: one or more nn.Linear layers with the same in_features")
        self.in_features = linears[0].in_features
        self.splits = [m.out_features for m in linears]
        self.out_features = sum(self.splits)
        w = torch.cat([m.weight.detach().float() for m in linears])
        biases = [m.bias for m in linears]
        bias = None if all(b is None for b in biases) else torch.cat(
            [torch.zeros(m.out_features) if b is None else b.detach().float() for m, b in zip(linears, biases)])
        scale = (w.abs().amax(dim=1) / 127).clamp(min=1e-12).double()
        zero = torch.zeros_like(scale, dtype=torch.long)
        with warnings.catch_warnings():  # torch flags quantized tensor creation as deprecated; the kernel is current
            warnings.simplefilter("ignore")
            q = torch.quantize_per_channel(w, scale, zero, 0, torch.qint8)
            self._packed = torch.ops.quantized.linear_prepack(q, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = torch.ops.quantized.linear_dynamic(x.reshape(-1, shape[-1]).float().contiguous(), self._packed,
                                               REDUCE_RANGE)
        return y.view(*shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        parts = f" ({' + '.join(map(str, self.splits))})" if len(self.splits) > 1 else ""
        return f"in_features={self.in_features}, out_features={self.out_features}{parts}, int8"


def int8_available() -> bool:
    return "fbgemm" in torch.backends.quantized.supported_engines or "x86" in torch.backends.quantized.supported_engines


# Layers that read the same input, fused into one int8 layer: name of the fused layer -> its parts.
# The modules holding them (models.minicpm Attention and MLP) use the fused layer when it is set.
FUSED = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}


def quantize_linears(module: nn.Module, min_weight: int = MIN_PACKED_WEIGHT) -> int:
    """Replace every nn.Linear below `module` of at least `min_weight` weights by an Int8Linear
    (in place; CPU inference only), q/k/v and gate/up fused (FUSED: at 10 rows, the LocDiT's, the
    fused calls measured 15-25% faster than apart, the whole LocDiT 3-7%); returns how many
    nn.Linear were replaced."""
    if not int8_available():
        raise RuntimeError("int8 weights need torch's fbgemm/x86 quantized engine, which this torch build lacks")
    n = 0
    for parent in list(module.modules()):
        for fused, names in FUSED.items():
            parts = [parent._modules.get(name) for name in names]
            if fused in parent._modules and all(type(m) is nn.Linear and m.weight.numel() >= min_weight
                                                for m in parts):
                setattr(parent, fused, Int8Linear(*parts))
                for name in names:
                    delattr(parent, name)
                n += len(parts)
    targets = [(parent, name, child) for parent in module.modules() for name, child in parent.named_children()
               if type(child) is nn.Linear and child.weight.numel() >= min_weight]
    for parent, name, child in targets:
        setattr(parent, name, Int8Linear(child))
    return n + len(targets)
