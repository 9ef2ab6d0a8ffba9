"""MiniCPM4-style transformer stack: the TSLM, the RALM and the inner stacks of LocEnc / LocDiT.

Pre-norm decoder layers (RMSNorm -> grouped-query attention -> RMSNorm -> SwiGLU MLP), rotary
position embeddings (plain RoPE, or LongRoPE with per-frequency factors) and the muP options:
`scale_emb` multiplies token embeddings, `scale_depth / sqrt(num_layers)` scales each residual
branch, `dim_model_base` divides the hidden by `hidden_size / dim_model_base` before an LM head.
The muP scalings apply only when `use_mup` is true, as in the official VoxCPM code; the backbone
has no LM head, so `dim_model_base` is only carried along (config round trips, LM folders).

Parameter names follow the official checkpoint (`embed_tokens`, `layers.N.self_attn.q_proj`,
`layers.N.mlp.gate_proj`, `layers.N.input_layernorm`, `norm`), which is also the Llama / MiniCPM
Hugging Face layout below the `model.` prefix.

Incremental decoding: `forward(x, cache=c)` fills a `KVCache` with the prefix (prefill) and
`forward_step(x, c)` appends one position per call. Batches of different prefix lengths are
left-padded and described by `attention_mask` (True = real token); positions then count from each
item's first real token, so a padded item computes what it would compute alone.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


@dataclass
class MiniCPMConfig:
    hidden_size: int = 1024
    intermediate_size: int = 4096
    num_attention_heads: int = 16
    num_key_value_heads: int = 2
    num_hidden_layers: int = 24
    vocab_size: int = 0                 # 0: no token embedding (RALM, LocEnc, LocDiT)
    kv_channels: int | None = None      # head dim; None = hidden_size // num_attention_heads
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    # None: plain RoPE. LongRoPE: {type: longrope, short_factor: [...], long_factor: [...],
    # original_max_position_embeddings: N}, one factor per rotary frequency (head_dim / 2).
    rope_scaling: dict | None = None
    max_position_embeddings: int = 32768
    no_rope: bool = False
    use_mup: bool = False               # the three muP settings below act only when this is true
    scale_emb: float = 12.0             # (defaults: MiniCPM4's values)
    scale_depth: float = 1.4
    dim_model_base: int = 256

    @property
    def head_dim(self) -> int:
        return self.kv_channels or self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "lm") -> "MiniCPMConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
        cfg = cls(**values)
        cfg.validate(where)
        return cfg

    def validate(self, where: str = "lm") -> None:
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"{where}: num_attention_heads ({self.num_attention_heads}) must be a multiple "
                             f"of num_key_value_heads ({self.num_key_value_heads})")
        if self.head_dim % 2:
            raise ValueError(f"{where}: the head dim ({self.head_dim}) must be even for RoPE")
        rs = self.rope_scaling
        if rs is not None:
            kind = rs.get("type", rs.get("rope_type"))
            if kind != "longrope":
                raise ValueError(f"{where}.rope_scaling: only type 'longrope' is supported, got {kind!r}")
            for key in ("short_factor", "long_factor", "original_max_position_embeddings"):
                if key not in rs:
                    raise ValueError(f"{where}.rope_scaling: missing {key!r}")
            for key in ("short_factor", "long_factor"):
                if len(rs[key]) != self.head_dim // 2:
                    raise ValueError(f"{where}.rope_scaling.{key}: {len(rs[key])} factors, expected "
                                     f"head_dim / 2 = {self.head_dim // 2}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # variance in fp32, normalised value cast back before the weight (as the official code)
        var = x.float().pow(2).mean(-1, keepdim=True)
        return (x * torch.rsqrt(var + self.eps)).to(x.dtype) * self.weight


class RotaryEmbedding(nn.Module):
    """cos/sin for the positions asked for, computed on the fly in fp32.

    The frequency tables are plain fp32 CPU tensors (copied once per device), not buffers, so
    `model.to(torch.bfloat16)` cannot round them: a rounded frequency times a large position would
    shift the phase far more than rounding the final cos/sin does.
    """

    def __init__(self, cfg: MiniCPMConfig):
        super().__init__()
        dim = cfg.head_dim
        cpu = torch.device("cpu")  # also when the model is built under torch.device("meta")
        inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, dim, 2, device=cpu).float() / dim))
        factors, self.scaling = torch.ones(dim // 2, device=cpu), 1.0
        if cfg.rope_scaling is not None:
            rs = cfg.rope_scaling
            orig = rs["original_max_position_embeddings"]
            # LongRoPE picks one factor set for the whole model from the configured context
            use_long = cfg.max_position_embeddings > orig
            factors = torch.tensor(rs["long_factor" if use_long else "short_factor"], dtype=torch.float32, device=cpu)
            ratio = cfg.max_position_embeddings / orig
            self.scaling = math.sqrt(1 + math.log(ratio) / math.log(orig))
        self._tables = {cpu: (inv_freq, 1.0 / factors)}

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """positions: long [...]; returns cos, sin float32 [..., head_dim]."""
        dev = positions.device
        if dev not in self._tables:
            cpu = self._tables[torch.device("cpu")]
            self._tables[dev] = (cpu[0].to(dev), cpu[1].to(dev))
        inv_freq, inv_factor = self._tables[dev]
        freqs = positions.float().unsqueeze(-1) * inv_factor * inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos() * self.scaling, emb.sin() * self.scaling


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [B, heads, S, D]; cos/sin: [S, D] or [B, S, D]. Rotation in fp32, as the official code."""
    if cos.dim() == 3:
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    xf = x.float()
    return (xf * cos + _rotate_half(xf) * sin).to(x.dtype)


class KVCache:
    """Key/value buffers of every layer of one stack, for incremental decoding.

    `k`, `v`: [layers, batch, kv_heads, max_length, head_dim]; `length` slots are filled (the
    same for every item); `valid` [batch, max_length] marks real (non-padding) slots once a
    padded prefix was written; `next_pos` [batch] is each item's next rotary position.
    """

    def __init__(self, num_layers: int, batch_size: int, num_kv_heads: int, head_dim: int,
                 max_length: int, device=None, dtype=torch.float32):
        shape = (num_layers, batch_size, num_kv_heads, max_length, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.max_length = max_length
        self.length = 0
        self.valid: torch.Tensor | None = None
        self.next_pos = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.pos_step = 1  # rotary position advance per forward_step (the backbone's audio_positions)

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]

    def select(self, index: torch.Tensor) -> "KVCache":
        """Keep only the batch items in `index` (e.g. drop finished utterances), in place."""
        self.k, self.v = self.k[:, index], self.v[:, index]
        self.next_pos = self.next_pos[index]
        if self.valid is not None:
            self.valid = self.valid[index]
        return self

    def _reserve(self, n: int) -> int:
        if self.length + n > self.max_length:
            raise RuntimeError(f"KV cache full: {self.length} + {n} positions > max_length {self.max_length} "
                               f"(raise model.max_length)")
        start, self.length = self.length, self.length + n
        return start


class Attention(nn.Module):
    def __init__(self, cfg: MiniCPMConfig):
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, self.num_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.hidden_size, self.num_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(cfg.hidden_size, self.num_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, cfg.hidden_size, bias=False)
        self.register_module("qkv_proj", None)  # int8 inference: q, k, v as one layer (models.cpu_linear)
        # training only: the first `probe_heads` heads' attention probabilities are kept in `probs`
        # [B, probe_heads, S, S] for a loss on them (the backbone's alignment loss)
        self.probe_heads, self.probs = 0, None

    def _qkv(self, x):
        if self.qkv_proj is not None:
            return self.qkv_proj(x).split(self.qkv_proj.splits, dim=-1)
        return self.q_proj(x), self.k_proj(x), self.v_proj(x)

    def forward(self, x, rope, mask, is_causal, cache: KVCache | None = None, layer: int = 0, start: int = 0):
        """x: [B, S, H]. With `cache`, the S new keys/values go to slots start..start+S and the
        queries attend to every filled slot (mask: [B, 1, S or 1, slots] bool or None)."""
        b, s, _ = x.shape
        q, k, v = self._qkv(x)
        q = q.reshape(b, s, self.num_heads, self.head_dim).transpose(1, 2)
        k = k.reshape(b, s, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = v.reshape(b, s, self.num_kv_heads, self.head_dim).transpose(1, 2)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if cache is not None:
            cache.k[layer, :, :, start:start + s] = k
            cache.v[layer, :, :, start:start + s] = v
            k, v = cache.k[layer, :, :, :start + s], cache.v[layer, :, :, :start + s]
        if self.probe_heads and cache is None and self.training:
            self.probs = self._probe(q, k, mask, is_causal)
        dtype = q.dtype
        if q.device.type == "cpu" and dtype == torch.bfloat16:  # CPU bf16 attention is ~20x slower than fp32 (measured)
            q, k, v = q.float(), k.float(), v.float()
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal and mask is None,
                                             enable_gqa=self.num_kv_heads != self.num_heads).to(dtype)
        return self.o_proj(out.transpose(1, 2).reshape(b, s, self.num_heads * self.head_dim))

    def _probe(self, q, k, mask, is_causal) -> torch.Tensor:
        """Attention probabilities of the first `probe_heads` query heads (fp32, differentiable)."""
        n = self.probe_heads
        kv = torch.arange(n, device=q.device) // (self.num_heads // self.num_kv_heads)
        scores = (q[:, :n].float() @ k[:, kv].float().transpose(-1, -2)) / math.sqrt(self.head_dim)
        s = scores.shape[-1]
        allowed = mask
        if is_causal:
            causal = torch.ones(s, s, dtype=torch.bool, device=q.device).tril()
            allowed = causal if allowed is None else allowed & causal
        if allowed is not None:
            scores = scores.masked_fill(~allowed, float("-inf"))
        return scores.softmax(-1)


class MLP(nn.Module):
    def __init__(self, cfg: MiniCPMConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)
        self.register_module("gate_up_proj", None)  # int8 inference: gate and up as one layer

    def forward(self, x):
        if self.gate_up_proj is not None:
            gate, up = self.gate_up_proj(x).split(self.gate_up_proj.splits, dim=-1)
            return self.down_proj(F.silu(gate) * up)
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: MiniCPMConfig):
        super().__init__()
        self.self_attn = Attention(cfg)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        # muP depth scaling of each residual branch
        self.branch_scale = cfg.scale_depth / math.sqrt(cfg.num_hidden_layers) if cfg.use_mup else None

    def _add(self, residual, branch):
        return residual + branch if self.branch_scale is None else residual + branch * self.branch_scale

    def forward(self, x, rope, mask, is_causal, cache=None, layer=0, start=0):
        x = self._add(x, self.self_attn(self.input_layernorm(x), rope, mask, is_causal, cache, layer, start))
        return self._add(x, self.mlp(self.post_attention_layernorm(x)))


class MiniCPMModel(nn.Module):
    """Embedding (when vocab_size > 0), decoder layers and the final norm; no LM head."""

    def __init__(self, cfg: MiniCPMConfig):
        super().__init__()
        self.config = cfg
        if cfg.vocab_size > 0:
            self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.rope = None if cfg.no_rope else RotaryEmbedding(cfg)
        # training only: recompute each layer's activations in the backward pass (memory for time)
        self.gradient_checkpointing = False

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings, times scale_emb under muP."""
        emb = self.embed_tokens(ids)
        return emb * self.config.scale_emb if self.config.use_mup else emb

    def new_cache(self, batch_size: int, max_length: int, device=None, dtype=None) -> KVCache:
        p = self.norm.weight
        return KVCache(len(self.layers), batch_size, self.config.num_key_value_heads, self.config.head_dim,
                       max_length, device or p.device, dtype or p.dtype)

    def forward(self, x: torch.Tensor, is_causal: bool = True, attention_mask: torch.Tensor | None = None,
                cache: KVCache | None = None, positions: torch.Tensor | None = None) -> torch.Tensor:
        """x: [B, S, H] input embeddings -> [B, S, H] normalised hidden states.

        attention_mask: bool [B, S], False at (left) padding. cache: an empty KVCache to fill.
        positions: [B, S] rotary positions in place of the running index (may be fractional).
        """
        b, s, _ = x.shape
        mask = None
        if attention_mask is None:
            running = torch.arange(s, device=x.device)
        else:
            attention_mask = attention_mask.bool()
            running = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
            allowed = attention_mask[:, None, None, :].expand(b, 1, s, s)
            if is_causal:
                allowed = allowed & torch.ones(s, s, dtype=torch.bool, device=x.device).tril()
            # a padding query would see no key at all (NaN): let it see itself, it is never used
            mask = allowed | torch.eye(s, dtype=torch.bool, device=x.device)
        positions = running if positions is None else positions
        rope = None if self.rope is None else self.rope(positions)
        start = 0
        if cache is not None:
            if cache.length:
                raise RuntimeError("forward(cache=...) fills an empty cache; use forward_step to extend it")
            start = cache._reserve(s)
            cache.next_pos = (positions[..., -1] + 1).expand(b).clone()
            if attention_mask is not None:
                cache.valid = torch.zeros(b, cache.max_length, dtype=torch.bool, device=x.device)
                cache.valid[:, :s] = attention_mask
        recompute = self.gradient_checkpointing and cache is None and self.training and torch.is_grad_enabled()
        for i, layer in enumerate(self.layers):
            if recompute:
                x = checkpoint(layer, x, rope, mask, is_causal, use_reentrant=False)
            else:
                x = layer(x, rope, mask, is_causal, cache, i, start)
        return self.norm(x)

    def forward_step(self, x: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """One new position per item: x [B, H] -> hidden [B, H]; appends to `cache`."""
        start = cache._reserve(1)
        mask = None
        if cache.valid is not None:
            cache.valid[:, start] = True
            mask = cache.valid[:, None, None, :start + 1]
        rope = None
        if self.rope is not None:
            cos, sin = self.rope(cache.next_pos[:, None])  # [B, 1, D]
            rope = (cos, sin)
        h = x[:, None, :]
        for i, layer in enumerate(self.layers):
            h = layer(h, rope, mask, False, cache, i, start)
        cache.next_pos = cache.next_pos + cache.pos_step
        return self.norm(h)[:, 0]
