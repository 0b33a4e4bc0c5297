"""The QSNN paper's MNIST training loop (Eshraghian et al. 2022, code: jeshraghian/QSNNs),
written for the parity test from the paper's description and the facts of its repository, in
plain PyTorch + snnTorch (+ Brevitas for the quantized layers). Nothing here imports qsnn.

Facts it follows (reference.md section 1 and the repository's mnist/ scripts):
- net: conv5x5(1->16, no bias) -> avg_pool2d(2) -> BatchNorm2d -> Leaky -> conv5x5(16->64,
  no bias) -> avg_pool2d(2) -> BatchNorm2d -> Leaky -> flatten -> fc(1024->10) -> Dropout ->
  Leaky; every layer called once per time step, the same image fed at every step (direct
  current); one snn.Leaky(beta, threshold, fast_sigmoid(slope)) per layer, reset by
  subtraction; BatchNorm called per step (so its running statistics move T times a batch).
- quantized (``bits`` not None): Brevitas QuantConv2d/QuantLinear(weight_bit_width=bits), the
  default signed narrow-range per-tensor max-abs weight quantizer; the quantized fc has no
  bias, the full-precision one has (nn.Linear's default).
- weights: the layers' default initialisation (the test copies qsnn's initial weights in).
- loss: snnTorch mse_count_loss(correct_rate, incorrect_rate) on the output spikes.
- Adam(lr, betas); CosineAnnealingLR(T_max, eta_min) stepped after every batch.
- images: uint8 / 255 in float32 (torchvision ToTensor; Normalize((0,), (1,)) is the identity).

Harness adaptations, not the reference's: the run is in float64 (``.double()``; images cast
after the float32 division, as a float32 pipeline would feed them), and snnTorch's float32
spikes are cast to float64 (0/1: exact) so the next float64 layer takes them. snnTorch's
surrogate returns float32 spikes, so the gradient reaching it is rounded to float32 (relative
error ~1e-8 per step, enough to move a spike within 50 steps); ``FastSigmoid64`` is the same
surrogate (forward H(u), backward g / (slope |u| + 1)^2, snnTorch's definition) kept in the
input's dtype, for a float64 comparison; ``snntorch_surrogate=True`` uses snnTorch's own. Batches come in
the order the caller gives; the caller's hooks may seed torch's global RNG before each step (so
dropout masks are drawn from the same state as on the other side) and load a state.
"""
from __future__ import annotations

import gzip
from pathlib import Path
from typing import Callable, Iterable

import lightning as L
import numpy as np
import snntorch as snn
import snntorch.functional as SF
import torch
import torch.nn.functional as F
from snntorch import surrogate
from torch import nn


def read_idx_uint8(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (MNIST's images/labels), raw or .gz."""
    data = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    assert data[:3] == b"\x00\x00\x08", f"{path}: not an unsigned-byte IDX file"
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_mnist_train(root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """train-images/labels from ``root`` as (float32 images [N, 1, 28, 28] in [0, 1], int64 labels)."""
    images = read_idx_uint8(root / "train-images-idx3-ubyte")
    labels = read_idx_uint8(root / "train-labels-idx1-ubyte")
    x = torch.from_numpy(images.copy()).to(torch.float32).div(255).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))


class FastSigmoid64(torch.autograd.Function):
    """snnTorch's fast_sigmoid surrogate in the input's dtype (see the module docstring)."""

    @staticmethod
    def forward(ctx, u, slope):
        ctx.save_for_backward(u)
        ctx.slope = slope
        return (u > 0).to(u.dtype)

    @staticmethod
    def backward(ctx, g):
        (u,) = ctx.saved_tensors
        return g / (ctx.slope * torch.abs(u) + 1.0) ** 2, None


def fast_sigmoid64(slope: float):
    return lambda u: FastSigmoid64.apply(u, slope)


class ReferenceNet(nn.Module):
    def __init__(self, bits: int | None, beta: float, threshold: float, slope: float, dropout: float,
                 num_steps: int, batch_norm: bool = True, snntorch_surrogate: bool = False):
        super().__init__()
        self.num_steps, self.batch_norm = num_steps, batch_norm
        grad = surrogate.fast_sigmoid(slope) if snntorch_surrogate else fast_sigmoid64(slope)
        if bits is None:
            self.conv1 = nn.Conv2d(1, 16, 5, bias=False)
            self.conv2 = nn.Conv2d(16, 64, 5, bias=False)
            self.fc1 = nn.Linear(64 * 4 * 4, 10)
        else:
            import brevitas.nn as qnn

            self.conv1 = qnn.QuantConv2d(1, 16, 5, bias=False, weight_bit_width=bits)
            self.conv2 = qnn.QuantConv2d(16, 64, 5, bias=False, weight_bit_width=bits)
            self.fc1 = qnn.QuantLinear(64 * 4 * 4, 10, bias=False, weight_bit_width=bits)
        self.conv1_bn, self.conv2_bn = nn.BatchNorm2d(16), nn.BatchNorm2d(64)
        self.lif1, self.lif2, self.lif3 = (snn.Leaky(beta, threshold=threshold, spike_grad=grad) for _ in range(3))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mem1, mem2, mem3 = self.lif1.init_leaky(), self.lif2.init_leaky(), self.lif3.init_leaky()
        spk_rec, mem_rec = [], []
        for _ in range(self.num_steps):
            cur1 = F.avg_pool2d(self.conv1(x), 2)
            if self.batch_norm:
                cur1 = self.conv1_bn(cur1)
            spk1, mem1 = self.lif1(cur1, mem1)
            cur2 = F.avg_pool2d(self.conv2(spk1.to(cur1.dtype)), 2)
            if self.batch_norm:
                cur2 = self.conv2_bn(cur2)
            spk2, mem2 = self.lif2(cur2, mem2)
            cur3 = self.dropout(self.fc1(spk2.to(cur2.dtype).flatten(1)))
            spk3, mem3 = self.lif3(cur3, mem3)
            spk_rec.append(spk3.to(cur3.dtype))
            mem_rec.append(mem3)
        return torch.stack(spk_rec), torch.stack(mem_rec)


def train_reference(net: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], lr: float,
                    t_max: int, betas=(0.9, 0.999), eta_min: float = 0.0, correct_rate: float = 0.8,
                    incorrect_rate: float = 0.2, before_step: Callable | None = None,
                    after_step: Callable | None = None) -> list[float]:
    """The reference's train(): one optimizer and scheduler step per batch; the loss of each step.
    ``before_step(step, net, optimizer)`` / ``after_step(step, net, optimizer)``: the harness's
    hooks (seed the RNG, load or read the state), not part of the reference."""
    optimizer = torch.optim.Adam(net.parameters(), lr=lr, betas=betas)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t_max, eta_min=eta_min)
    criterion = SF.mse_count_loss(correct_rate=correct_rate, incorrect_rate=incorrect_rate)
    net.train()
    losses = []
    for step, (x, y) in enumerate(batches):
        if before_step is not None:
            before_step(step, net, optimizer)
        spk, _ = net(x)
        loss = criterion(spk, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        if after_step is not None:
            after_step(step, net, optimizer)
    return losses


class LossProbe(L.Callback):
    """Lightning callback for the qsnn side of the comparison (here so Hydra can import it by
    name). Before each step it seeds torch's global RNG with ``seed + step`` (the harness does
    the same on the reference side, so dropout masks come from the same state) and keeps the
    net's state, the Adam moments (by parameter name) and the LR; after it, the loss and the
    labels. At the end it saves {"states": [...], "losses", "labels"} to ``path`` (torch.save);
    ``states`` has one more entry than ``losses``: the state after the last step."""

    def __init__(self, path: str, seed: int = 0):
        self.path, self.seed = str(path), int(seed)
        self.states, self.losses, self.labels = [], [], []

    def _state(self, trainer, pl_module) -> dict:
        opt = trainer.optimizers[0]
        names = {id(p): n.removeprefix("net.") for n, p in pl_module.named_parameters()}
        adam = {names[id(p)]: {k: v.detach().clone() for k, v in opt.state[p].items()}
                for g in opt.param_groups for p in g["params"] if p in opt.state}
        return {"net": {k: v.detach().clone() for k, v in pl_module.net.state_dict().items()}, "adam": adam,
                "lr": opt.param_groups[0]["lr"]}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        torch.manual_seed(self.seed + trainer.global_step)
        self.states.append(self._state(trainer, pl_module))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))
        self.labels.append(batch[1].detach().clone())

    def on_train_end(self, trainer, pl_module):
        self.states.append(self._state(trainer, pl_module))
        torch.save({"states": self.states, "losses": self.losses, "labels": self.labels}, self.path)
