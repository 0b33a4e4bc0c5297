"""S per-seed ``SpikingNet``s as one net: every tensor holds all seeds, folded into its first dim.

Layout: a per-seed tensor of shape [d0, ...] becomes [S*d0, ...] (a scalar becomes [S]); seed s
is ``stacked.reshape(S, -1)[s]``. That layout is what the folded ops consume directly:
- Linear [out, in] -> ``StackedLinear`` weight [S*out, in], run as one batched matmul (bmm) over
  activations [N, S, in] -> [N, S, out];
- Conv [out, in/g, k, k] -> one Conv with S times the channels and ``groups=S*g`` (seed s's
  channels are block s), so ``ConvAvgPool2d``'s fused kernel works unchanged;
- BatchNorm(C) -> BatchNorm(S*C): per-channel statistics are per seed, exactly;
- snn.Leaky -> ``StackedLeaky``: beta/threshold [S], broadcast per seed into the fused LIF;
- Dropout -> ``StackedDropout``: each seed's mask drawn from that seed's own RNG stream, in the
  order a single run draws it (same masks);
- weight quantizers -> ``quant.stacked_quantizer`` (scales per seed).
Activations run as [T, B, S*C, ...] (conv stages) or [T, B, S, F] (fc stages); the input of
seed s is folded into dim 2 the same way. The fast path of ``qsnn.nn.net`` runs unchanged on it.
Anything else (a layer with parameters that has no stacked form) raises ``TypeError`` naming it.
"""
from __future__ import annotations

import copy

import snntorch as snn
import torch
from torch import nn
from torch.nn.utils import parametrize

from qsnn.nn.net import SpikingNet, Stage
from qsnn.nn.neurons import fusable, lif_sequence
from qsnn.stacked.quant import stacked_quantizer


class StackedLinear(nn.Linear):
    """S Linear layers [out, in] as one weight [S*out, in]: x [N, S, in] (or [N, S*in]) -> [N, S, out]."""

    def __init__(self, seeds: int, in_features: int, out_features: int, bias: bool = True):
        super().__init__(in_features, seeds * out_features, bias=bias)
        self.seeds, self.out_per_seed = seeds, out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        S = self.seeds
        xs = x.reshape(x.shape[0], S, -1).transpose(0, 1)  # [S, N, in]
        w = self.weight.view(S, self.out_per_seed, -1).transpose(1, 2)  # [S, in, out]
        y = torch.baddbmm(self.bias.view(S, 1, -1), xs, w) if self.bias is not None else torch.bmm(xs, w)
        return y.transpose(0, 1)  # [N, S, out]


class StackedDropout(nn.Module):
    """Dropout over [N, S, F] with seed s's mask drawn under seed s's RNG state (``rng.use(s)``),
    exactly as ``F.dropout`` on CPU draws it for that seed's [N, F] activations alone."""

    def __init__(self, p: float, seeds: int):
        super().__init__()
        self.p, self.seeds, self.rng = float(p), seeds, None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        masks = []
        for s in range(self.seeds):
            with self.rng.use(s):
                masks.append(torch.empty_like(x[:, s]).bernoulli_(1 - self.p).div_(1 - self.p))
        return x * torch.stack(masks, dim=1)


class StackedLeaky(snn.Leaky):
    """snn.Leaky with beta/threshold of shape [S]; ``multistep`` runs the fused LIF with them
    broadcast per seed over [T, B, S*C, ...] (C = 1 for fc stages: [T, B, S, F])."""

    def __init__(self, seeds: int, lif: snn.Leaky):
        super().__init__(beta=torch.zeros(seeds), threshold=torch.zeros(seeds), spike_grad=lif.spike_grad,
                         learn_beta=isinstance(lif.beta, nn.Parameter),
                         learn_threshold=isinstance(lif.threshold, nn.Parameter),
                         reset_mechanism=lif.reset_mechanism)
        self.seeds = seeds

    def _per_seed(self, v: torch.Tensor, cur: torch.Tensor) -> torch.Tensor:
        S, C = self.seeds, cur.shape[2] // self.seeds
        return v.view(S, 1).expand(S, C).reshape(S * C, *[1] * (cur.dim() - 3))

    def multistep(self, cur: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return lif_sequence(cur, self._per_seed(self.beta.clamp(0, 1), cur), self._per_seed(self.threshold, cur),
                            self.spike_grad, self.reset_mechanism)  # the seeds are just more neurons


_CONVS = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}
_STATELESS = (nn.Flatten, nn.Identity, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.MaxPool1d, nn.MaxPool2d,
              nn.MaxPool3d, nn.ReLU)


def _with_quantizer(new: nn.Module, old: nn.Module, seeds: int) -> nn.Module:
    if parametrize.is_parametrized(old, "weight"):
        for q in old.parametrizations.weight:
            parametrize.register_parametrization(new, "weight", stacked_quantizer(q, seeds))
    return new


def _conv_type(m: nn.Module):
    return next((t for t in _CONVS if isinstance(m, t)), None)


def fold(m: nn.Module, seeds: int) -> nn.Module:
    """The stacked form of one seed's module (weights not copied yet: see ``load_seeds``)."""
    S = seeds
    if isinstance(m, nn.Linear):
        return _with_quantizer(StackedLinear(S, m.in_features, m.out_features, m.bias is not None), m, S)
    conv = _conv_type(m)
    if conv is not None:
        if m.padding_mode != "zeros":
            raise TypeError(f"{type(m).__name__}(padding_mode={m.padding_mode!r}) has no stacked form")
        new = conv(S * m.in_channels, S * m.out_channels, m.kernel_size, stride=m.stride, padding=m.padding,
                   dilation=m.dilation, groups=S * m.groups, bias=m.bias is not None)
        return _with_quantizer(new, m, S)
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return type(m)(S * m.num_features, eps=m.eps, momentum=m.momentum, affine=m.affine,
                       track_running_stats=m.track_running_stats)
    if isinstance(m, nn.Dropout):
        return StackedDropout(m.p, S)
    if type(m) is snn.Leaky:
        if not fusable(m):
            raise TypeError("snn.Leaky with state quantization, inhibition or graded spikes has no stacked form")
        return StackedLeaky(S, m)
    if isinstance(m, _STATELESS):
        return copy.deepcopy(m)
    if isinstance(m, nn.Sequential) and not m._parameters and not m._buffers:  # incl. ConvAvgPool2d
        new = copy.copy(m)
        new._modules = {name: fold(child, S) for name, child in m._modules.items()}
        return new
    raise TypeError(f"{type(m).__name__} has no stacked form")


def _tensors(m: nn.Module) -> dict[str, torch.Tensor]:
    return {**dict(m.named_parameters()), **dict(m.named_buffers())}


class StackedNet(SpikingNet):
    """The stacked net; ``forward`` takes ``fold_input([x_0, ..., x_{S-1}])`` and returns spikes
    and membrane [T, B, S, classes]; ``rates`` are per stage and per seed ([S] each)."""

    def __init__(self, nets: list[SpikingNet]):
        S = len(nets)
        for net in nets:
            if not isinstance(net, SpikingNet) or net.impl != "fast":
                raise TypeError("only SpikingNet with impl=fast has a stacked form")
        stages = [Stage(fold(st.op, S), fold(st.lif, S), fold(st.norm, S) if st.norm is not None else None)
                  for st in nets[0].stages]
        super().__init__(stages, impl="fast")
        self.seeds = S
        self.load_seeds(nets)

    def set_rng(self, rng) -> None:
        for m in self.modules():
            if isinstance(m, StackedDropout):
                m.rng = rng

    @torch.no_grad()
    def load_seeds(self, nets: list[nn.Module]) -> None:
        """Copy every parameter and buffer of the per-seed nets into the stacked tensors."""
        ours, theirs = _tensors(self), [_tensors(n) for n in nets]
        if set(ours) != set(theirs[0]):
            raise TypeError(f"stacked net and seed net differ: {sorted(set(ours) ^ set(theirs[0]))[:3]}")
        for name, t in ours.items():
            per = [d[name].to(t.dtype) for d in theirs]
            if t.numel() == len(nets) * per[0].numel():
                t.copy_(torch.cat([p.reshape(-1) for p in per]).view_as(t))
            elif any(not torch.equal(p, per[0]) for p in per[1:]):
                raise TypeError(f"{name} differs between seeds and has no per-seed form")
            else:
                t.copy_(per[0])

    @torch.no_grad()
    def write_back(self, s: int, net: nn.Module) -> None:
        """Copy seed ``s``'s slice of every stacked tensor into ``net`` (a per-seed net)."""
        ours = _tensors(self)
        for name, t in _tensors(net).items():
            src = ours[name]
            t.copy_(src.reshape(self.seeds, -1)[s].view_as(t) if src.numel() == self.seeds * t.numel() else src)

    def fold_input(self, xs: list[torch.Tensor]) -> torch.Tensor:
        """Per-seed inputs [T, B, d, ...] -> [T, B, S*d, ...]. Inputs that repeat every step (direct
        encoding: an expanded view) stay an expanded view, so the first op still runs once."""
        if all(x.dim() > 1 and x.shape[0] > 1 and x.stride(0) == 0 for x in xs):
            x0 = torch.stack([x[0] for x in xs], dim=1).flatten(1, 2)
            return x0.unsqueeze(0).expand(xs[0].shape[0], *x0.shape)
        return torch.stack(xs, dim=2).flatten(2, 3)

    def stage_rate(self, spikes: torch.Tensor) -> torch.Tensor:
        """One mean firing rate per seed: [S]."""
        return spikes.reshape(spikes.shape[0], spikes.shape[1], self.seeds, -1).mean((0, 1, 3))

    def _forward_fast(self, x):
        h, mem = super()._forward_fast(x)
        T, B, S = h.shape[0], h.shape[1], self.seeds
        return h.reshape(T, B, S, -1), mem.reshape(T, B, S, -1)
