"""A tiny LightningModule/DataModule pair for testing the training entry point."""
import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_modules.base import VoxLabModule


class ToyModule(VoxLabModule):
    def __init__(self, config):
        super().__init__(config)
        self.cfg = config
        hidden = config.module.get("hidden")  # an architecture a config can change (resume tests)
        self.net = torch.nn.Linear(4, 1) if not hidden else torch.nn.Sequential(torch.nn.Linear(4, hidden),
                                                                                torch.nn.Linear(hidden, 1))

    def training_step(self, batch, batch_idx):
        if self.cfg.module.fail_at is not None and self.global_step >= self.cfg.module.fail_at:
            raise RuntimeError("toy failure")
        if self.cfg.module.get("sleep"):
            import time

            time.sleep(self.cfg.module.sleep)  # slow enough to be signalled mid-run
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        nan_from = self.cfg.module.get("nan_from")
        if (self.cfg.module.get("nan_at") is not None and self.global_step == self.cfg.module.nan_at
                or nan_from is not None and self.global_step >= nan_from):
            loss = loss * float("nan")
        utts = {"utt": [f"toy{batch_idx}_{i}" for i in range(len(x))]}
        if not self.usable({"loss": loss}, utts):
            return None
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.cfg.optim.lr)


class ToyData(L.LightningDataModule):
    def __init__(self, config):
        super().__init__()
        self.fail = config.datamodule.get("fail_in_dataloader")  # a setting that fails only inside fit

    def train_dataloader(self):
        if self.fail:
            raise RuntimeError("toy dataloader failure")
        g = torch.Generator().manual_seed(0)
        x = torch.randn(64, 4, generator=g)
        return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)


def toy_experiment(folder, module=None, run=None, trainer=None) -> str:
    """Write a toy experiment (project base + the toy module) into `folder`; returns its yaml path."""
    import yaml

    (folder / "exps").mkdir()
    base = yaml.safe_load(open("experiments/base.yaml"))
    base.update({"module": {"_target_": "tests.helpers.toy_module.ToyModule", "fail_at": None, "sleep": 0.0, "nan_at": None, "nan_from": None, "hidden": None,
                            **(module or {})},
                 "datamodule": {"_target_": "tests.helpers.toy_module.ToyData", "fail_in_dataloader": False}, "optim": {"lr": 0.1}})
    base["run"].update({"root": str(folder / "runs"), **(run or {})})
    base["trainer"].update({"accelerator": "cpu", "enable_model_summary": False, **(trainer or {})})
    (folder / "exps" / "base.yaml").write_text(yaml.safe_dump(base))
    (folder / "exps" / "toy.yaml").write_text("extends: base.yaml\n")
    return str(folder / "exps" / "toy.yaml")
