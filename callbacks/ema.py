"""EMA of the trained weights (the backbone: the TTS module's only trained submodule; the frozen VAE
travels as data), with Lightning's `EMAWeightAveraging` (torch.optim.swa_utils.AveragedModel).

When on (`callbacks.ema._target_=callbacks.ema.BackboneEMA`):
- validation (losses, TTS samples, and Seed-TTS-Eval when it runs at validation ends) uses the EMA
  weights: they are swapped in when validation starts and out when it has ended, so this callback
  comes after the others (the config lists it last);
- every checkpoint's `state_dict` holds the EMA weights, so `models.load`, `models.export` and
  `make eval` use them; the raw weights ride beside them (`current_model_state`), and a resumed run
  continues both exactly;
- at the end of training the module is left holding the EMA weights.
`decay` per optimizer step; before `start_step` the average follows the weights (it starts from the
weights of that step); `every_n_steps`: update interval.
"""
from __future__ import annotations

from lightning.pytorch.callbacks import EMAWeightAveraging


class BackboneEMA(EMAWeightAveraging):
    def __init__(self, decay: float = 0.999, start_step: int | None = None, every_n_steps: int = 1):
        if not 0.0 < float(decay) < 1.0:
            raise ValueError(f"callbacks.ema.decay must be in (0, 1), got {decay}")
        if int(every_n_steps) < 1:
            raise ValueError(f"callbacks.ema.every_n_steps must be at least 1, got {every_n_steps}")
        super().__init__(decay=float(decay), update_every_n_steps=int(every_n_steps))
        self.start_step = int(start_step or 0)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step <= self.start_step and self._average_model is not None:
            self._average_model.n_averaged.zero_()  # the next update copies the weights instead of averaging
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    # The EMA weights stay in until validation has ended (not only its epoch), so that callbacks
    # evaluating in on_validation_end (callbacks.evaluation) score them too.
    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        pass

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._average_model is not None:
            self._swap_models(pl_module)
