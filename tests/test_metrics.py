"""Cost metrics against networks small enough to count by hand (and against neurobench where it applies)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from qsnn.cost.metrics import Workload, connection_sparsity, cost_batches, cost_metrics, footprint, param_count
from qsnn.nn.models.fcsnn import fcsnn
from qsnn.nn.net import SpikingNet, Stage
from qsnn.nn.neurons import make_leaky
from qsnn.nn.quant.apply import quantize_weights
from qsnn.nn.quant.uniform import UniformSTEQuantizer
from snntorch import surrogate

LEAKY_BUFFER_BYTES = 4 + 4 + 8 + 4  # threshold, graded_spikes_factor, reset_mechanism_val (int64), beta


def leaky():
    return make_leaky(beta=0.5, threshold=1.0, spike_grad=surrogate.fast_sigmoid())


def linear(w):
    layer = nn.Linear(len(w[0]), len(w), bias=False)
    layer.weight.data = torch.tensor(w)
    return layer


def two_layer_net():
    # 3 -> 2 -> 1. Hidden neuron 1 gets 0.5 per step and never reaches the threshold.
    return SpikingNet([Stage(linear([[1.0, 0.0, 2.0], [0.0, 0.0, 0.5]]), leaky()),
                       Stage(linear([[1.2, 1.0]]), leaky())], impl="fast")


def test_spiking_input_counts_accumulates_per_sample():
    # sample 0 spikes [1,0,1] then [0,1,1]; sample 1 is silent.
    x = torch.tensor([[[1.0, 0, 1], [0, 0, 0]], [[0, 1, 1], [0, 0, 0]]])  # [T=2, B=2, 3]
    m = Workload(two_layer_net()).run([x]).compute()
    # layer 1: t0 inputs 0 (1 nonzero weight) + 2 (2) = 3, t1 input 1 (0) + 2 (2) = 2 -> 5
    # hidden: neuron 0 spikes at t0 (mem 3) and t1 (1.5 + 2 - 1 = 2.5), neuron 1 never
    # layer 2: one spiking input x fan-out 1 per step -> 2; output mem 1.2 (spike) then 0.6+1.2-1 = 0.8
    assert m["synops_ac"] == pytest.approx(7 / 2) and m["synops_mac"] == 0
    assert m["synops"] == pytest.approx(7 / 2)
    assert m["synops_dense"] == pytest.approx((2 * 3 * 2 + 2 * 2 * 1) * 2 / 2)
    assert m["rate_layer0"] == pytest.approx(2 / 8) and m["rate_layer1"] == pytest.approx(1 / 4)
    assert m["activation_sparsity"] == pytest.approx(1 - 3 / 12)
    assert m["rate_mean"] == pytest.approx(3 / 12)


def test_analog_input_counts_macs_and_leaves_fast_path_alone():
    net = two_layer_net()
    x = torch.tensor([0.5, 0.0, 0.7]).expand(2, 1, 3)  # direct encoding: same current every step
    m = Workload(net).run([x]).compute()
    assert m["synops_mac"] == pytest.approx(2 * 3)  # (input 0: 1 weight + input 2: 2 weights) x 2 steps
    assert m["synops_ac"] == pytest.approx(2)       # hidden neuron 0 spikes both steps (1.9; 0.95+1.9-1)
    assert net.impl == "fast" and not net.stages[0].op._forward_hooks  # restored, hooks removed


def test_conv_fan_out_at_borders():
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    nn.init.constant_(conv.weight, 0.1)
    net = SpikingNet([Stage(conv, leaky()), Stage(nn.Sequential(nn.Flatten(), linear([[1.0] * 9])), leaky())])
    corner, centre = torch.zeros(1, 1, 1, 3, 3), torch.zeros(1, 1, 1, 3, 3)
    corner[..., 0, 0], centre[..., 1, 1] = 1, 1
    # a corner pixel reaches 4 outputs through a padded 3x3 kernel, the centre all 9; currents
    # of 0.1 never spike, so the fc layer sees no spikes
    assert Workload(net).run([corner]).compute()["synops_ac"] == pytest.approx(4)
    assert Workload(net).run([centre]).compute()["synops_ac"] == pytest.approx(9)


def test_static_metrics_of_a_4bit_fcsnn():
    net = quantize_weights(fcsnn([1, 8, 8], 10, surrogate.fast_sigmoid(), hidden=[128]),
                           lambda: UniformSTEQuantizer(bits=4), bits=4)
    assert param_count(net) == 64 * 128 + 128 + 128 * 10 + 10
    # weights at 4 bits + one fp32 scale per layer, biases at 32 bits, two Leaky layers' constants
    expected = (64 * 128 * 4 + 32 + 128 * 10 * 4 + 32 + (128 + 10) * 32) / 8 + 2 * LEAKY_BUFFER_BYTES
    fp = footprint(net, bits=4)
    assert fp["footprint_bytes"] == expected
    assert fp["footprint_fp32_bytes"] == param_count(net) * 4 + 2 * LEAKY_BUFFER_BYTES
    assert 0.85 < fp["footprint_saving"] < 7 / 8
    with torch.no_grad():  # zero out one full row of the float weight: it quantizes to exact zeros
        net.stages[1].op[0].parametrizations.weight.original[0].zero_()
    w0, w1 = net.stages[0].op[1].weight, net.stages[1].op[0].weight
    assert (w1[0] == 0).all()  # plus whatever small weights round to zero at 4 bits
    zeros = (w0 == 0).sum().item() + (w1 == 0).sum().item()
    assert connection_sparsity(net) == pytest.approx(zeros / (64 * 128 + 128 * 10))


def test_cost_metrics_keys():
    m = cost_metrics(two_layer_net(), 32, [torch.ones(2, 1, 3)])
    assert {"cost/params", "cost/footprint_bytes", "cost/synops", "cost/rate_layer1"} <= set(m)


def test_agrees_with_neurobench_on_float_models():
    pytest.importorskip("neurobench")
    from neurobench.metrics.static import ConnectionSparsity, ParameterCount
    from neurobench.metrics.utils.layers import single_layer_MACs
    net = two_layer_net()

    class Wrapped:  # what neurobench's static metrics call
        def __net__(self):
            return net

    assert ParameterCount()(Wrapped()) == param_count(net)
    assert ConnectionSparsity()(Wrapped()) == pytest.approx(connection_sparsity(net), abs=1e-4)
    x = torch.tensor([[1.0, 0, 1], [0, 1, 1]])
    ops0, spiking = single_layer_MACs(x, net.stages[0].op)
    ops1, _ = single_layer_MACs(torch.tensor([[1.0, 0], [1.0, 0]]), net.stages[1].op)  # hidden spikes
    assert spiking and float(ops0 + ops1) == Workload(net).run([x.unsqueeze(1)]).compute()["synops_ac"] == 7


def test_cost_pass_counts_at_most_max_batches():
    assert cost_batches(2, 4) == 2 and cost_batches(40, 4) == 4 and cost_batches(40, None) == 40
    assert cost_batches(None, 3) == 3


def test_digits_cost_on_all_test_batches_and_on_a_sample(make_cfg, tmp_path):
    """cost.max_batches=null counts every test batch (the values the full pass gave); a sample of
    one batch states its size and keeps the static metrics; its rates stay near the full ones."""
    from omegaconf import open_dict

    from qsnn.run.runner import train

    runs = {}
    for mb in ("null", "1"):
        cfg = make_cfg("trainer.max_epochs=1", "trainer.limit_train_batches=3", "logger=csv", "print_config=false",
                       "callbacks.progress_bar=null", f"cost.max_batches={mb}", "torch_threads=1")
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / mb)
        runs[mb] = train(cfg)
    full, one = (runs[k]["metrics"] for k in ("null", "1"))
    assert (full["cost/batches"], full["cost/samples"]) == (2, 360)  # digits: 360 test images, eval batch 256
    assert (one["cost/batches"], one["cost/samples"]) == (1, 256)
    assert "cost_s" in runs["1"]
    for k in ("cost/params", "cost/footprint_bytes", "cost/connection_sparsity"):
        assert one[k] == full[k]
    assert one["cost/rate_mean"] == pytest.approx(full["cost/rate_mean"], rel=0.1)
