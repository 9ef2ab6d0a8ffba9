"""Faster small-batch Linear layers for CPU inference (oneDNN pre-packed weights).

Why: the LocDiT runs 9-10 times per patch on 2 x 5 tokens and the LocEnc on 3 tokens. For such
row counts (2..~64) MKL's sgemm is several times slower per weight byte than its matrix-vector
path (measured here on an AMD EPYC: 10 rows x 4096 x 1024 at 2 GB/s vs 10 GB/s for one row), while
oneDNN with a weight packed once for the machine runs 1.5-2x faster. One-row calls (the LM steps)
stay on F.linear, which is the fastest there.

`pack_linears(module)` patches every nn.Linear below `module` of at least MIN_PACKED_WEIGHT
weights in place: parameters, names and
state_dict are unchanged (the packed copy is a plain attribute, not saved), and the packed path is
taken only for float32 CPU inputs with more than one row and no autograd; anything else (GPU,
bf16, training) uses F.linear. A weight changed in place after packing (load_state_dict, an
optimizer step) is re-packed on its next call. `unpack_linears(module)` undoes it.
"""
from __future__ import annotations

import types

import torch
import torch.nn as nn
import torch.nn.functional as F

# Below about 512 x 1024 weights the oneDNN call overhead outweighs the gain (measured): keep F.linear.
MIN_PACKED_WEIGHT = 1 << 19


def available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    w = self.weight
    if (x.device.type != "cpu" or x.dtype != torch.float32 or w.dtype != torch.float32 or x.requires_grad
            or torch.is_grad_enabled() or x.numel() <= x.shape[-1]):
        return F.linear(x, w, self.bias)
    key = (w.data_ptr(), w._version)
    if getattr(self, "_packed_key", None) != key:
        self._packed_weight = torch.ops.mkldnn._reorder_linear_weight(w.detach(), None)
        self._packed_key = key
    return torch.ops.mkldnn._linear_pointwise(x, self._packed_weight, self.bias, "none", [], "")


def pack_linears(module: nn.Module) -> int:
    """Use packed weights for every large nn.Linear below `module`; returns how many were patched."""
    if not available():
        return 0
    n = 0
    for m in module.modules():
        if type(m) is nn.Linear and "forward" not in m.__dict__ and m.weight.numel() >= MIN_PACKED_WEIGHT:
            m.forward = types.MethodType(_forward, m)
            n += 1
    return n


def unpack_linears(module: nn.Module) -> None:
    for m in module.modules():
        if type(m) is nn.Linear and "forward" in m.__dict__:
            del m.forward
            for attr in ("_packed_weight", "_packed_key"):
                m.__dict__.pop(attr, None)
