"""The LightningModule: encoded batch -> SpikingNet -> snnTorch loss; spike-count accuracy."""
from __future__ import annotations

import math
from typing import Callable

import lightning as L
import torch
from torch import nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from qsnn.nn.quant.apply import weight_bits


class QSNNModule(L.LightningModule):
    def __init__(
        self,
        net: nn.Module,
        loss_fn: Callable,
        optimizer: Callable,
        scheduler: Callable | None,
        num_classes: int,
        bits: int = 32,
        sparsity: Callable | None = None,
    ):
        super().__init__()
        # the full config is logged by the runner; factories are not checkpointable hparams
        self.save_hyperparameters(logger=False, ignore=["net", "loss_fn", "optimizer", "scheduler", "sparsity"])
        self.net, self.loss_fn, self.sparsity = net, loss_fn, sparsity
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.acc = nn.ModuleDict({s: MulticlassAccuracy(num_classes=num_classes, average="micro")
                                  for s in ("train_", "val_", "test_")})
        self.loss_mean = nn.ModuleDict({s: MeanMetric() for s in ("train_", "val_", "test_")})
        self.val_acc_best = MaxMetric()
        self.weight_bits = weight_bits(net, bits)
        self.val_acc_best.persistent(True)  # in checkpoints, so a resumed run keeps its best so far

    def forward(self, x: torch.Tensor):
        return self.net(x)

    def _step(self, batch, split: str):
        x, y = batch
        spk, _ = self.net(x)
        loss = self.loss_fn(spk, y)
        if self.sparsity is not None and split == "train":  # papers/002: ramped firing-rate penalty
            progress = self.global_step / max(int(self.trainer.estimated_stepping_batches), 1)
            sp = self.sparsity(self.net.rates_grad, progress)
            self.log("train/sparsity_loss", sp.detach(), on_step=False, on_epoch=True, batch_size=y.shape[0])
            loss = loss + sp
        preds = spk.sum(0).argmax(-1)  # spike-count decision
        # update(), not forward(): only the epoch value is logged, so no per-batch compute. The loss
        # enters as float32, the metric's state dtype: under precision=64 Lightning flips the metric's
        # cast dtype to float64 after its first log, which would round the running sum differently
        self.acc[split + "_"].update(preds, y)
        self.loss_mean[split + "_"].update(loss.detach().float())
        on_step, bs = split == "train", y.shape[0]
        self.log(f"{split}/loss", self.loss_mean[split + "_"], on_step=False, on_epoch=True, prog_bar=True)
        self.log(f"{split}/acc", self.acc[split + "_"], on_step=False, on_epoch=True, prog_bar=True)
        for i, r in enumerate(self.net.rates):
            # sync_dist: under DDP the epoch value is the mean over all ranks (torchmetrics objects
            # above, loss and acc, sync themselves)
            self.log(f"{split}/rate_layer{i}", r, on_step=False, on_epoch=True, batch_size=bs, sync_dist=True)
        if on_step:
            self.log("train/loss_step", loss.detach(), on_step=True, on_epoch=False)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def on_validation_epoch_end(self):
        if self.trainer.sanity_checking:
            return
        self.val_acc_best(self.acc["val_"].compute())
        self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True, sync_dist=True)

    def on_train_start(self):
        if self.global_step == 0:  # drop sanity-check values; a resumed run keeps its restored best
            self.val_acc_best.reset()
        if self.logger is not None:
            self.logger.log_metrics({"model/weight_bits": self.weight_bits,
                                     "model/weight_kib": self.weight_bits / 8 / 1024}, step=0)

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def configure_optimizers(self):
        opt = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return opt
        total = int(self.trainer.estimated_stepping_batches)
        epochs = self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else 1
        per_epoch = max(math.ceil(total / epochs), 1)
        sched = self.scheduler_factory(opt, steps_per_epoch=per_epoch, total_steps=total)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}
