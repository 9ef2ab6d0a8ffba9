"""The VoxCPM backbone: LocEnc -> TSLM -> FSQ -> RALM -> LocDiT, plus the stop head.

Module and parameter names are those of the official checkpoint (`feat_encoder`, `base_lm`,
`fsq_layer`, `residual_lm`, `feat_decoder.estimator`, `enc_to_lm_proj`, `lm_to_dit_proj`,
`res_to_dit_proj`, `stop_proj`, `stop_head`), so an official `model.safetensors` loads with
strict=True into the default configuration.

Config (`config.model`, `_target_: models.voxcpm.VoxCPMBackbone`; every key is a constructor argument):

- `lm`: the TSLM (`models.minicpm.MiniCPMConfig` keys: vocab_size, hidden_size, intermediate_size,
  num_attention_heads, num_key_value_heads, num_hidden_layers (`tslm24`/`tslm30`), kv_channels,
  rms_norm_eps, rope_theta, rope_scaling (null = plain RoPE, or LongRoPE factors),
  max_position_embeddings, use_mup, scale_emb, scale_depth, dim_model_base). The RALM, LocEnc
  and LocDiT copy its non-size settings (KV heads, norm eps, RoPE, muP), as the official model does.
- `encoder` / `dit`: LocEnc / LocDiT sizes {hidden_dim, ffn_dim, num_heads, num_layers, kv_channels}.
- `feat_dim` (VAE latent size, 64) and `patch_size` (latent frames per LM step, 2).
- `residual_lm_layers`: RALM depth; 0 = no RALM, TSLM -> LocDiT (`no_ralm_*`).
- `fsq`: {enabled, latent_dim, scale, quantize}. enabled=false: no bottleneck at all, the TSLM
  hidden goes on unchanged (`no_ralm_*`: "TSLM -> LocDiT"); latent_dim/scale: `d4s9`...`d1024s9`;
  quantize=false: the same Linear-tanh-Linear projection without rounding (`nofsq_d1024`).
- `residual_input_e`: the RALM input adds the patch embedding `E` at audio positions (the residual
  input fusion "E1"); false = `no_e1` (TSLM -> ALM -> LocDiT).
- `condition_on_residual`: the LocDiT condition adds the projected RALM hidden; false = `no_hres`
  (TSLM -> FSQ -> LocDiT). The RALM would then get no gradient at all, so it is not built.
- `flow`: {cfg_dropout: 0.1, t_mean: -0.4, t_std: 1.0, repeats: 1} flow-matching training settings.
  `repeats` k > 1 draws k flow times and noises per target patch, for the same condition (MAR's
  diffusion batch multiplier): the LocDiT runs k times, the LMs once, and the condition's gradient
  is averaged over k draws (less noisy). 1 is the paper.
- `history_noise`: 0 (the paper); > 0 adds Gaussian noise of that std (in latent units) to the
  latent patches the LocEnc reads in training (the history the TSLM and RALM see), not to the
  flow target nor the LocDiT's previous patch: generation feeds the model its own imperfect
  patches, and a model trained only on clean history drifts from the text (exposure bias).
- `prev_noise`: 0 (the paper); > 0 adds Gaussian noise of that std to the previous patch the LocDiT
  reads in training. With a clean previous patch the LocDiT predicts most of the next one from it
  and a small backbone learns to ignore the LM (Tacotron's prenet dropout answers the same problem).
- `align`: {heads: 0, sigma: 0.2}. heads > 0 adds a training loss (`align_loss`, weighted by
  `module.lambdas["align/loss"]`) that pushes the first `heads` attention heads of every TSLM layer
  to read the text near the diagonal (guided attention, DC-TTS); the network itself is unchanged.
- `phones`: {classes: 0}. classes > 0 adds `phone_head`, a Linear from the LocDiT condition to
  `classes` phones, and a training loss (`phone_loss`, weighted by `module.lambdas["phone/loss"]`):
  the condition of each target patch names the phone spoken at that patch's centre (the batch's
  `phone_labels`, -100 where none; the embedded corpus's espeak-ng phone timings). The condition is
  made before the patch is seen, so naming its phone needs the text: a direct signal to read it
  where the flow loss gives a weak one. Generation never uses the head.
- `audio_positions`: null (the paper: rotary position = running index); r > 0: text token n at rotary
  position n and audio patch j at j * r (r = text tokens per patch), in both LMs, in training and
  generation (`rotary_positions`; the caches advance r per patch).
- `lm_init`: {mode: none|full|partial, path, num_layers}: TSLM initialisation from a local
  Hugging Face causal LM (`models.lm_init`); applied by `apply_lm_init()`, never in __init__,
  so rebuilding a trained model from its config does not need the LM folder.
- `residual_fusion`: "add" (VoxCPM, the paper): the RALM input is the bottleneck output + `E`;
  "concat" (VoxCPM2): `fusion_concat_proj`, a Linear(2H -> H) over [bottleneck output, `E`]
  (`E` is 0 at text positions, so the Linear also acts there).
- `dit_condition_mode`: "sum" (VoxCPM): the LocDiT reads one condition token, proj(TSLM) +
  proj(RALM) + time embedding; "prefix" (VoxCPM2, the v2 DiT): proj(TSLM) and proj(RALM) are
  separate prefix tokens, followed by the time embedding as its own token.
- `residual_lm_no_rope`: false (VoxCPM); true runs the RALM without rotary positions (an option of
  the official VoxCPM2 config).
- `max_length`: default KV-cache length for generation (official `max_length`).
- `audio_start_id` / `audio_end_id`: 101 / 102.
- `official`: official config.json fields with no effect on the network (dtype, audio_vae_config,
  token ids, sampler settings), kept so an export writes them back (`models.official`).
- `lora`: null, or the official LoRAConfig fields (`models.lora`): adapters on the LMs, the LocDiT
  and/or the projections; every other weight is then frozen.
- `gradient_checkpointing`: false; true recomputes each TSLM and RALM layer in the backward pass
  (torch.utils.checkpoint) instead of keeping its activations: less memory for full fine-tuning at
  the cost of a second forward through the LMs; the loss and gradients are the same.

Packed batch (a dict; `models.packing` builds it), B items of S positions, layout per item
`[text tokens (prompt text + target text), 101, prompt patches, target patches, 102, padding]`:

- `text_tokens` long [B, S]: token ids at text positions (incl. 101 and 102), 0 elsewhere.
- `text_mask` bool [B, S]: text positions (incl. 101, 102).
- `audio_feats` float [B, S, P, D]: latent patches at audio positions, 0 elsewhere.
- `audio_mask` bool [B, S]: audio positions (prompt and target patches).
- `loss_mask` bool [B, S]: target patches: the flow-matching loss and the stop CE are taken here.
- `stop_labels` long [B, S]: 1 at the last target patch, else 0.
- `lengths` long [B] (optional): real positions per item (padding is on the right).

Conventions taken from the official training code: the LocDiT condition and the stop head at
position i see the LM states of position i-1 (a right shift, zeros at 0); the LocDiT "previous
patch" of position i is the latent patch at i-1 (zeros after 101, the last prompt patch for the
first target patch); FSQ is applied at audio positions only, text positions pass unchanged.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.fsq import FSQ
from models.lm_init import init_lm
from models.locdit import FlowMatching, LocDiT
from models.locenc import LocEnc
from models.lora import apply_lora
from models.minicpm import MiniCPMConfig, MiniCPMModel
from models.packing import NO_LABEL

FUSIONS = ("add", "concat")         # residual_fusion: VoxCPM, VoxCPM2
CONDITION_MODES = ("sum", "prefix")  # dit_condition_mode: VoxCPM, VoxCPM2
BATCH_KEYS = ("text_tokens", "text_mask", "audio_feats", "audio_mask", "loss_mask", "stop_labels")
LOCAL_KEYS = ("hidden_dim", "ffn_dim", "num_heads", "num_layers", "kv_channels")
DEFAULTS: dict[str, Any] = {
    "fsq": {"enabled": True, "latent_dim": 256, "scale": 9, "quantize": True},
    "flow": {"cfg_dropout": 0.1, "t_mean": -0.4, "t_std": 1.0, "repeats": 1},
    "lm_init": {"mode": "none", "path": None, "num_layers": None},
    "encoder": {"hidden_dim": 1024, "ffn_dim": 4096, "num_heads": 16, "num_layers": 4, "kv_channels": None},
    "dit": {"hidden_dim": 1024, "ffn_dim": 4096, "num_heads": 16, "num_layers": 4, "kv_channels": None},
    "align": {"heads": 0, "sigma": 0.2},
    "phones": {"classes": 0},
}


def model_section(name: str, given: dict | None) -> dict:
    """The sub-section `model.<name>` with its defaults (DEFAULTS) filled in; an unknown key fails."""
    out = dict(DEFAULTS[name])
    unknown = sorted(set(given or {}) - set(out))
    if unknown:
        raise ValueError(f"model.{name}: unknown key(s) {unknown}; known: {sorted(out)}")
    out.update(given or {})
    return out


def shift_right(x: torch.Tensor) -> torch.Tensor:
    """Position i gets position i-1's value; position 0 gets zeros."""
    return torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)


def local_config(lm: MiniCPMConfig, local: dict, where: str) -> MiniCPMConfig:
    """LocEnc / LocDiT stack: the LM's settings with the local sizes (as the official model)."""
    cfg = MiniCPMConfig(**{**lm.to_dict(), "hidden_size": local["hidden_dim"], "intermediate_size": local["ffn_dim"],
                           "num_attention_heads": local["num_heads"], "num_hidden_layers": local["num_layers"],
                           "kv_channels": local["kv_channels"], "vocab_size": 0})
    cfg.validate(f"model.{where} (inherits model.lm's KV heads and RoPE)")
    return cfg


class VoxCPMBackbone(nn.Module):
    def __init__(self, lm: dict, encoder: dict | None = None, dit: dict | None = None, feat_dim: int = 64,
                 patch_size: int = 2, residual_lm_layers: int = 6, fsq: dict | None = None,
                 residual_input_e: bool = True, condition_on_residual: bool = True, flow: dict | None = None,
                 lm_init: dict | None = None, max_length: int = 4096, audio_start_id: int = 101,
                 audio_end_id: int = 102, official: dict | None = None, lora: dict | None = None,
                 gradient_checkpointing: bool = False, history_noise: float = 0.0, prev_noise: float = 0.0,
                 align: dict | None = None, audio_positions: float | None = None, residual_fusion: str = "add",
                 dit_condition_mode: str = "sum", residual_lm_no_rope: bool = False, phones: dict | None = None):
        super().__init__()
        if residual_fusion not in FUSIONS:
            raise ValueError(f"model.residual_fusion must be one of {FUSIONS}, got {residual_fusion!r}")
        if dit_condition_mode not in CONDITION_MODES:
            raise ValueError(f"model.dit_condition_mode must be one of {CONDITION_MODES}, got {dit_condition_mode!r}")
        if residual_fusion == "concat" and not residual_input_e:
            raise ValueError("model.residual_fusion=concat fuses E into the RALM input: it needs model.residual_input_e=true")
        lm_cfg = MiniCPMConfig.from_dict(dict(lm), "model.lm")
        if lm_cfg.vocab_size <= 0:
            raise ValueError("model.lm.vocab_size must be > 0 (the TSLM embeds text tokens)")
        enc, dit_, fsq_, flow_ = (model_section("encoder", encoder), model_section("dit", dit), model_section("fsq", fsq),
                                  model_section("flow", flow))
        lm_init_ = model_section("lm_init", lm_init)
        self.align = model_section("align", align)
        if not 0 <= int(self.align["heads"]) <= lm_cfg.num_attention_heads or float(self.align["sigma"]) <= 0:
            raise ValueError(f"model.align: heads must be 0..{lm_cfg.num_attention_heads} and sigma > 0, "
                             f"got {self.align}")
        self.phones = model_section("phones", phones)
        if int(self.phones["classes"]) < 0:
            raise ValueError(f"model.phones.classes must be >= 0 (0: no phone loss), got {self.phones['classes']}")
        self.config = dict(lm=lm_cfg.to_dict(), encoder=enc, dit=dit_, feat_dim=feat_dim, patch_size=patch_size,
                           residual_lm_layers=residual_lm_layers, fsq=fsq_, residual_input_e=residual_input_e,
                           condition_on_residual=condition_on_residual, flow=flow_, lm_init=lm_init_,
                           max_length=max_length, audio_start_id=audio_start_id, audio_end_id=audio_end_id,
                           official=official, lora=None, gradient_checkpointing=bool(gradient_checkpointing),
                           history_noise=float(history_noise), prev_noise=float(prev_noise), align=self.align,
                           audio_positions=audio_positions, residual_fusion=residual_fusion,
                           dit_condition_mode=dit_condition_mode, residual_lm_no_rope=bool(residual_lm_no_rope),
                           phones=self.phones)
        self.dit_condition_mode = dit_condition_mode
        self.history_noise, self.prev_noise = float(history_noise), float(prev_noise)
        if audio_positions is not None and not float(audio_positions) > 0:
            raise ValueError(f"model.audio_positions must be null or > 0 (text tokens per patch), got {audio_positions}")
        self.audio_positions = None if audio_positions is None else float(audio_positions)
        self.feat_dim, self.patch_size, self.max_length = feat_dim, patch_size, max_length
        self.audio_start_id, self.audio_end_id = audio_start_id, audio_end_id
        self.residual_input_e = residual_input_e
        self.lm_init = lm_init_
        h = lm_cfg.hidden_size

        self.base_lm = MiniCPMModel(lm_cfg)
        self.residual_lm = None
        if residual_lm_layers > 0 and condition_on_residual:
            self.residual_lm = MiniCPMModel(MiniCPMConfig(**{**lm_cfg.to_dict(), "num_hidden_layers": residual_lm_layers,
                                                             "vocab_size": 0, "no_rope": bool(residual_lm_no_rope)}))
        self.feat_encoder = LocEnc(local_config(lm_cfg, enc, "encoder"), input_dim=feat_dim)
        self.feat_decoder = FlowMatching(LocDiT(local_config(lm_cfg, dit_, "dit"), in_channels=feat_dim), **flow_)
        self.fsq_layer = (FSQ(h, h, fsq_["latent_dim"], fsq_["scale"], fsq_["quantize"])
                          if fsq_["enabled"] else None)
        self.enc_to_lm_proj = nn.Linear(enc["hidden_dim"], h)
        self.lm_to_dit_proj = nn.Linear(h, dit_["hidden_dim"])
        self.res_to_dit_proj = nn.Linear(h, dit_["hidden_dim"]) if self.residual_lm is not None else None
        self.fusion_concat_proj = (nn.Linear(2 * h, h) if residual_fusion == "concat" and self.residual_lm is not None
                                   else None)
        self.stop_proj = nn.Linear(h, h)
        self.stop_actn = nn.SiLU()
        self.stop_head = nn.Linear(h, 2, bias=False)
        classes = int(self.phones["classes"])
        self.phone_head = nn.Linear(dit_["hidden_dim"], classes) if classes else None
        for lm in (self.base_lm, self.residual_lm):
            if lm is not None:
                lm.gradient_checkpointing = bool(gradient_checkpointing)
        for layer in self.base_lm.layers:
            layer.self_attn.probe_heads = int(self.align["heads"])
        if lora is not None:
            apply_lora(self, lora)

    @property
    def is_voxcpm2(self) -> bool:
        """The official VoxCPM2 switches (concat fusion, prefix condition): reference tokens 103/104 apply."""
        return (self.config["residual_fusion"], self.config["dit_condition_mode"]) == ("concat", "prefix")

    # ---- pieces shared by training and generation -------------------------------------------
    def encode_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """Latent patches [..., P, D] -> projected patch embeddings `E` [..., lm hidden]."""
        return self.enc_to_lm_proj(self.feat_encoder(patches))

    def embed_audio(self, audio_feats: torch.Tensor, audio_mask: torch.Tensor) -> torch.Tensor:
        """`E` at audio positions, zeros elsewhere: [B, S, H]. Only audio patches are encoded."""
        e = self.encode_patches(audio_feats[audio_mask])
        out = e.new_zeros(*audio_mask.shape, e.shape[-1])
        out[audio_mask] = e
        return out

    def input_embeds(self, text_tokens, text_mask, feat_embed, audio_mask) -> torch.Tensor:
        """TSLM input: token embeddings at text positions, `E` at audio positions, 0 at padding."""
        text = self.base_lm.embed(text_tokens)
        out = torch.where(text_mask.unsqueeze(-1), text, torch.zeros_like(text))
        return torch.where(audio_mask.unsqueeze(-1), feat_embed.to(out.dtype), out)

    def bottleneck(self, hidden, audio_mask=None) -> torch.Tensor:
        """FSQ at audio positions (all positions when audio_mask is None); text positions pass."""
        if self.fsq_layer is None:
            return hidden
        if audio_mask is None:
            return self.fsq_layer(hidden)
        q = self.fsq_layer(hidden[audio_mask])
        out = hidden.clone()
        out[audio_mask] = q.to(out.dtype)
        return out

    def residual_inputs(self, hidden, feat_embed, audio_mask=None) -> torch.Tensor:
        """RALM input: the bottleneck output, plus `E` at audio positions unless `no_e1`; with
        `residual_fusion=concat`, Linear([bottleneck output, E]) instead of the sum."""
        if not self.residual_input_e:
            return hidden
        if audio_mask is not None:
            feat_embed = feat_embed * audio_mask.unsqueeze(-1).to(feat_embed.dtype)
        if self.fusion_concat_proj is not None:
            return self.fusion_concat_proj(torch.cat([hidden, feat_embed.to(hidden.dtype)], dim=-1))
        return hidden + feat_embed

    def dit_condition(self, lm_hidden, residual_hidden=None) -> torch.Tensor:
        """LocDiT condition: "sum": mu = proj(TSLM hidden) [+ proj(RALM hidden)], [..., H];
        "prefix": the projections as separate tokens, [..., 1 or 2, H] (models.locdit)."""
        mu = self.lm_to_dit_proj(lm_hidden)
        if self.res_to_dit_proj is None:
            return mu.unsqueeze(-2) if self.dit_condition_mode == "prefix" else mu
        res = self.res_to_dit_proj(residual_hidden)
        return torch.stack([mu, res], dim=-2) if self.dit_condition_mode == "prefix" else mu + res

    def stop_logits(self, lm_hidden) -> torch.Tensor:
        """[..., 2]: class 1 = the patch predicted from this state is the last one."""
        return self.stop_head(self.stop_actn(self.stop_proj(lm_hidden)))

    def rotary_positions(self, text_mask, audio_mask, attention_mask=None) -> torch.Tensor | None:
        """With `audio_positions` r: text token n at rotary position n (101 at N), audio patch j at j * r
        (102 one step after the last patch), so patch j sits beside the text it speaks when the text is
        read at r tokens per patch: reading near the diagonal becomes a fixed relative offset (0),
        which RoPE attention finds at once, instead of an offset that depends on the text length.
        None (the paper): the running index."""
        if self.audio_positions is None:
            return None
        real = torch.ones_like(text_mask) if attention_mask is None else attention_mask.bool()
        text_pos = ((text_mask & real).cumsum(1) - 1).float()
        audio_pos = ((audio_mask & real).cumsum(1) - 1).float() * self.audio_positions
        pos = torch.where(audio_mask, audio_pos, text_pos)
        after = audio_mask.cumsum(1).bool() & ~audio_mask  # 102 and padding after the audio
        last = audio_pos.amax(1, keepdim=True)
        pos = torch.where(after, last + self.audio_positions, pos)
        return torch.where(real, pos, torch.zeros_like(pos))

    # ---- training ---------------------------------------------------------------------------------
    def hidden_states(self, batch: dict) -> dict[str, torch.Tensor]:
        """Per-position states of a packed batch: `tslm` (TSLM output), `bottleneck` (after FSQ),
        `ralm` (RALM output, if any), `feat_embed` (E); unshifted, [B, S, H]."""
        for key in BATCH_KEYS[:4]:
            if key not in batch:
                raise KeyError(f"packed batch has no {key!r} (fields: {', '.join(BATCH_KEYS)})")
        text_mask, audio_mask = batch["text_mask"].bool(), batch["audio_mask"].bool()
        feat_embed = self.embed_audio(batch["audio_feats"], audio_mask)
        pos = self.rotary_positions(text_mask, audio_mask)
        tslm = self.base_lm(self.input_embeds(batch["text_tokens"], text_mask, feat_embed, audio_mask), positions=pos)
        out = {"feat_embed": feat_embed, "tslm": tslm, "bottleneck": self.bottleneck(tslm, audio_mask)}
        if self.residual_lm is not None:
            out["ralm"] = self.residual_lm(self.residual_inputs(out["bottleneck"], feat_embed, audio_mask),
                                           positions=pos)
        return out

    def forward(self, batch: dict, *, generator: torch.Generator | None = None, t=None, noise=None,
                cfg_keep=None) -> dict[str, torch.Tensor]:
        """Training losses of a packed batch: {"flow_loss", "stop_loss"} (unweighted means).

        t [N], noise [N, P, D], cfg_keep bool [N] (N = number of target patches, in batch order)
        fix the flow-matching randomness; otherwise it is drawn from `generator` / the global RNG.
        """
        history = batch
        if self.training and self.history_noise > 0:
            feats = batch["audio_feats"]
            jitter = torch.randn(feats.shape, generator=generator, device=feats.device, dtype=feats.dtype)
            history = {**batch, "audio_feats": feats + self.history_noise * jitter}
        states = self.hidden_states(history)
        sel = batch["loss_mask"].bool()
        lm_hidden = shift_right(states["bottleneck"])[sel]
        res_hidden = shift_right(states["ralm"])[sel] if "ralm" in states else None
        feats = batch["audio_feats"]
        x1, prev = feats[sel], shift_right(feats)[sel]
        if self.training and self.prev_noise > 0:
            prev = prev + self.prev_noise * torch.randn(prev.shape, generator=generator, device=prev.device, dtype=prev.dtype)
        mu = self.dit_condition(lm_hidden, res_hidden)
        flow = self.feat_decoder.loss(x1, mu, prev, t=t, noise=noise, cfg_keep=cfg_keep, generator=generator)
        logits = self.stop_logits(lm_hidden).float()
        stop = F.cross_entropy(logits, batch["stop_labels"][sel].long(), reduction="sum") / sel.sum().clamp(min=1)
        out = {"flow_loss": flow, "stop_loss": stop}
        if self.align["heads"] and self.training:
            out["align_loss"] = self.alignment_loss(batch)
        if self.phone_head is not None and "phone_labels" in batch:
            cond = mu.sum(-2) if self.dit_condition_mode == "prefix" else mu
            out["phone_loss"] = F.cross_entropy(self.phone_head(cond).float(), batch["phone_labels"][sel],
                                                ignore_index=NO_LABEL)
        return out

    def alignment_loss(self, batch: dict) -> torch.Tensor:
        """Guided attention (Tachibana et al. 2018, DC-TTS) on the TSLM's first `align.heads` heads of
        every layer: attention from an audio patch to the text is pushed near the diagonal (patch j
        of T reads text token n of N where n/N ~ j/T; weight 1 - exp(-(n/N - j/T)^2 / 2 sigma^2));
        attention to anything but the text (101, the patches) costs the full weight 1.
        A tiny backbone trained from scratch otherwise learns to continue the audio without
        reading the text for thousands of steps. Read from the last training forward."""
        text_mask, audio_mask = batch["text_mask"].bool(), batch["audio_mask"].bool()
        text = text_mask & (batch["text_tokens"] != self.audio_start_id) & (batch["text_tokens"] != self.audio_end_id)
        text = text & ~audio_mask.cumsum(1).bool()  # the 102 after the audio is never read
        def unit(mask):  # position n of N along the item -> (n + 0.5) / N
            return (mask.cumsum(1) - 0.5) / mask.sum(1, keepdim=True).clamp(min=1)
        q, k = unit(audio_mask), unit(text)
        near = torch.exp(-(k[:, None, :] - q[:, :, None]) ** 2 / (2 * float(self.align["sigma"]) ** 2))
        weight = 1 - near * text[:, None, :]                                  # [B, S query, S key]
        probs = torch.stack([layer.self_attn.probs for layer in self.base_lm.layers])  # [L, B, h, S, S]
        cost = (probs * weight[None, :, None]).sum(-1)                     # [L, B, h, S]
        sel = audio_mask[None, :, None].expand_as(cost)
        return cost[sel].mean()

    # ---- incremental decoding (the generation loop lives in the inference code) ------------------
    def new_caches(self, batch_size: int, max_length: int | None = None, device=None, dtype=None) -> dict:
        n = max_length or self.max_length
        return {"base": self.base_lm.new_cache(batch_size, n, device, dtype),
                "residual": None if self.residual_lm is None else self.residual_lm.new_cache(batch_size, n, device, dtype)}

    def prefill(self, text_tokens, text_mask, audio_feats, audio_mask, caches: dict,
                attention_mask: torch.Tensor | None = None):
        """Run the prefix (zero-shot: `[text, 101]`; cloning: `[prompt text + text, 101, prompt patches]`,
        left-padded with `attention_mask` False for a batch), filling the caches.

        Returns (lm_hidden, residual_hidden) [B, H] of the last position: the states that condition
        the first generated patch (residual_hidden is None without a RALM).
        """
        text_mask, audio_mask = text_mask.bool(), audio_mask.bool()
        feat_embed = self.embed_audio(audio_feats, audio_mask)
        x = self.input_embeds(text_tokens, text_mask, feat_embed, audio_mask)
        pos = self.rotary_positions(text_mask, audio_mask, attention_mask)
        h = self.bottleneck(self.base_lm(x, attention_mask=attention_mask, cache=caches["base"], positions=pos),
                            audio_mask)
        r = None
        if self.residual_lm is not None:
            r = self.residual_lm(self.residual_inputs(h, feat_embed, audio_mask), attention_mask=attention_mask,
                                 cache=caches["residual"], positions=pos)
        if pos is not None:  # the next patch: one step after the prompt's patches (0 when zero-shot)
            for cache in (caches["base"], caches["residual"]):
                if cache is not None:
                    cache.next_pos = audio_mask.sum(1).float() * self.audio_positions
                    cache.pos_step = self.audio_positions
        return h[:, -1], (None if r is None else r[:, -1])

    def step(self, patch: torch.Tensor, caches: dict):
        """Append one generated patch [B, P, D] to both LMs; returns the next (lm_hidden, residual_hidden)."""
        e = self.encode_patches(patch)
        h = self.bottleneck(self.base_lm.forward_step(e, caches["base"]))
        if self.residual_lm is None:
            return h, None
        return h, self.residual_lm.forward_step(self.residual_inputs(h, e), caches["residual"])

    # ---- LM initialisation ------------------------------------------------------------------------
    def apply_lm_init(self, tokenizer=None, path=None) -> dict | None:
        """Initialise the TSLM as `model.lm_init` says (call once before training from scratch),
        from `path` when given (the folder the entry point resolved), else `model.lm_init.path`;
        `tokenizer` (the text frontend) must be the LM's own (models.lm_init)."""
        settings = {**self.lm_init, **({"path": str(path)} if path is not None else {})}
        return init_lm(self.base_lm, **settings, tokenizer=tokenizer)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
