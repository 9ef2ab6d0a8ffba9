"""Pack utterances into the backbone's training sequence layout (field list in `models.voxcpm`).

One item: `[prompt text + text, 101, prompt patches, target patches, 102]`. Latents are [T, D]
frames (VAE frame rate, 25 Hz); they are grouped into patches of `patch_size` frames. The official
code never makes a zero latent frame: its training packer right-pads the target's waveform to
whole patches before encoding, and its inference left-pads a prompt's waveform to whole patches.
The latent cache encodes both forms that way (`datamodules.latents`), so the latents given here
are whole patches already. Latents that are not (a direct caller's) get zero frames: at the end
of a target, at the start of a prompt.

Voice cloning here continues the prompt, as VoxCPM-0.5B's inference does; the stop label is on
the last target patch, and the loss on the target patches only (`prompt_loss=True`: on the prompt's
patches too, which are speech of the same voice as well, so a prompted item costs no positions
that teach nothing). `pack_with_reference` is the official fine-tuning layout of an item
with a reference audio (its manifest's `ref_audio`): the reference between the tokens 103 and 104
before the text.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

FIELDS = ("text_tokens", "text_mask", "audio_feats", "audio_mask", "loss_mask", "stop_labels")
NO_LABEL = -100  # a position without a phone label (`phone_labels`; cross_entropy's ignore_index)


def to_patches(latents: torch.Tensor, patch_size: int, pad_left: bool = False) -> torch.Tensor:
    """[T, D] frames -> [ceil(T / P), P, D] patches, zero-padding the last (or first) patch."""
    if latents.dim() != 2:
        raise ValueError(f"latents must be [frames, latent_dim], got shape {tuple(latents.shape)}")
    t, d = latents.shape
    pad = (-t) % patch_size
    if pad:
        latents = F.pad(latents, (0, 0, pad, 0) if pad_left else (0, 0, 0, pad))
    return latents.reshape(-1, patch_size, d)


def pack_utterance(text_ids: Sequence[int] | torch.Tensor, latents: torch.Tensor,
                   prompt_text_ids: Sequence[int] | torch.Tensor | None = None,
                   prompt_latents: torch.Tensor | None = None, *, patch_size: int = 2,
                   audio_start_id: int = 101, audio_end_id: int = 102,
                   prompt_loss: bool = False) -> dict[str, torch.Tensor]:
    """One training item: each field of `FIELDS` with a leading sequence dim S."""
    if (prompt_text_ids is None) != (prompt_latents is None):
        raise ValueError("a prompt needs both prompt_text_ids and prompt_latents")
    text = torch.as_tensor(text_ids, dtype=torch.long).reshape(-1)
    if prompt_text_ids is not None:
        text = torch.cat([torch.as_tensor(prompt_text_ids, dtype=torch.long).reshape(-1), text])
    target = to_patches(latents.float(), patch_size)
    if target.shape[0] == 0:
        raise ValueError("target latents are empty")
    prompt = (to_patches(prompt_latents.float(), patch_size, pad_left=True) if prompt_latents is not None
              else target.new_zeros(0, patch_size, target.shape[-1]))
    if prompt.shape[-1] != target.shape[-1]:
        raise ValueError(f"prompt latent dim {prompt.shape[-1]} != target latent dim {target.shape[-1]}")
    n_text, n_prompt, n_target = text.numel() + 1, prompt.shape[0], target.shape[0]  # +1: the 101 token
    s = n_text + n_prompt + n_target + 1
    p, d = target.shape[1:]
    out = {
        "text_tokens": torch.zeros(s, dtype=torch.long),
        "text_mask": torch.zeros(s, dtype=torch.bool),
        "audio_feats": torch.zeros(s, p, d),
        "audio_mask": torch.zeros(s, dtype=torch.bool),
        "loss_mask": torch.zeros(s, dtype=torch.bool),
        "stop_labels": torch.zeros(s, dtype=torch.long),
    }
    out["text_tokens"][:n_text] = torch.cat([text, torch.tensor([audio_start_id])])
    out["text_tokens"][-1] = audio_end_id
    out["text_mask"][:n_text] = True
    out["text_mask"][-1] = True
    audio = slice(n_text, n_text + n_prompt + n_target)
    out["audio_feats"][audio] = torch.cat([prompt, target])
    out["audio_mask"][audio] = True
    out["loss_mask"][n_text + (0 if prompt_loss else n_prompt):n_text + n_prompt + n_target] = True
    out["stop_labels"][s - 2] = 1  # the last target patch
    return out


def pack_with_reference(text_ids: Sequence[int] | torch.Tensor, latents: torch.Tensor, ref_latents: torch.Tensor, *,
                        patch_size: int = 2, audio_start_id: int = 101, audio_end_id: int = 102,
                        ref_start_id: int = 103, ref_end_id: int = 104) -> dict[str, torch.Tensor]:
    """One training item with a reference audio, the official fine-tuning layout
    `[103, ref patches, 104, text, 101, target patches, 102]` (both latents in the target form,
    whole patches from the waveform); the loss and the stop label are on the target patches only."""
    ref = to_patches(ref_latents.float(), patch_size)
    body = pack_utterance(text_ids, latents, patch_size=patch_size, audio_start_id=audio_start_id,
                          audio_end_id=audio_end_id)
    if ref.shape[0] == 0:
        raise ValueError("reference latents are empty")
    if ref.shape[-1] != body["audio_feats"].shape[-1]:
        raise ValueError(f"reference latent dim {ref.shape[-1]} != target latent dim {body['audio_feats'].shape[-1]}")
    n = ref.shape[0] + 2
    head = {"text_tokens": torch.zeros(n, dtype=torch.long), "text_mask": torch.zeros(n, dtype=torch.bool),
            "audio_feats": torch.zeros(n, *ref.shape[1:]), "audio_mask": torch.zeros(n, dtype=torch.bool),
            "loss_mask": torch.zeros(n, dtype=torch.bool), "stop_labels": torch.zeros(n, dtype=torch.long)}
    head["text_tokens"][[0, -1]] = torch.tensor([ref_start_id, ref_end_id])
    head["text_mask"][[0, -1]] = True
    head["audio_feats"][1:-1] = ref
    head["audio_mask"][1:-1] = True
    return {k: torch.cat([head[k], body[k]]) for k in FIELDS}


def collate_packed(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Right-pad items to the longest; padding has every mask False. Adds `lengths` [B]."""
    if not items:
        raise ValueError("collate_packed: empty batch")
    lengths = torch.tensor([it["text_tokens"].shape[0] for it in items])
    s = int(lengths.max())
    out = {}
    for key in FIELDS:
        first = items[0][key]
        batch = first.new_zeros((len(items), s, *first.shape[1:]))
        for i, it in enumerate(items):
            batch[i, :it[key].shape[0]] = it[key]
        out[key] = batch
    out["lengths"] = lengths
    return out
