"""Turn a static batch [B, ...] with values in [0, 1] into a spike/current sequence [T, B, ...].

- direct : current injection, the same input every step. Returned as an expanded view (stride
           0 on time), which the fast path detects to run the first layer once.
- rate   : Bernoulli spikes with p = x each step (snntorch.spikegen.rate).
- latency: one spike per input, earlier for larger values (snntorch.spikegen.latency).
- none   : the data is already a sequence [B, T, ...] (event frames); moved to [T, B, ...].
"""
from __future__ import annotations

import torch
from snntorch import spikegen

ENCODINGS = ("direct", "rate", "latency", "none")


def encode(x: torch.Tensor, encoding: str, num_steps: int) -> torch.Tensor:
    if encoding == "direct":
        return x.unsqueeze(0).expand(num_steps, *x.shape)
    if encoding == "rate":
        return spikegen.rate(x.clamp(0, 1), num_steps=num_steps)
    if encoding == "latency":
        return spikegen.latency(x.clamp(0, 1), num_steps=num_steps, normalize=True, linear=True, clip=True)
    if encoding == "none":
        return x.transpose(0, 1)
    raise ValueError(f"data.encoding={encoding!r} is not allowed: use one of {', '.join(ENCODINGS)}")
