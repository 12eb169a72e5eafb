"""Digits workloads of the conv engine: trained adder (W4A4) and AdaBin nets reach >= 97 %
with the integer golden model on all 360 test images; lowering errors are clear."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nmaccel.model.conv_nets import build_workload, float_accuracy, quantize_net, run_int_net
from nmaccel.model.digits import load_digits_split


def _workload(kind):
    return build_workload(kind, bits=4)     # memoized in the process


@pytest.mark.parametrize("kind", ["adder", "binary"])
def test_integer_net_accuracy(kind):
    wl = _workload(kind)
    sp = load_digits_split()
    logits = run_int_net(wl.qnet, sp.test_images)
    acc = float((logits.argmax(1) == sp.test_labels).mean())
    facc = float_accuracy(wl.net, sp.test_images, sp.test_labels)
    # The integer net (what the engine runs) must reach 97 %. The float AdaBin net's accuracy
    # moves between 96.4 % and 97.8 % with the seed and the CPU (measured); the shipped weights
    # give 96.67 % float, 97.50 % integer.
    assert facc >= (0.97 if kind == "adder" else 0.96), f"float {kind} net {facc:.4f}"
    assert acc >= 0.97, f"integer {kind} net {acc:.4f} (float {facc:.4f})"
    modes = [j.mode for j in wl.qnet.jobs]
    assert modes[0] == "mul" and modes[-1] == "mul"          # first conv + classifier int8
    assert set(modes[1:-1]) == {"adder" if kind == "adder" else "binary"}
    if kind == "adder":
        assert all(j.bits == 4 for j in wl.qnet.jobs if j.mode == "adder")
        assert wl.qnet.jobs[0].out_bits == 4 and not wl.qnet.jobs[0].out_signed


def test_adder_lowering_is_the_ptq_formula():
    """The adder layer's affine v = ±acc + bias reproduces -(s/L)·acc + b through BN."""
    wl = _workload("adder")
    job = wl.qnet.jobs[1]
    assert set(np.unique(np.abs(job.coef[:, 0]))) <= {0, 1} and not job.coef[:, 1:].any()


def test_different_group_scales_are_refused():
    wl = _workload("adder")
    net = wl.net
    import copy
    small = copy.deepcopy(net)
    with torch.no_grad():   # shrink half the kernels below A: groups get different scales
        small.conv2.weight[:16] *= 1e-3
    with pytest.raises(ValueError, match="conv2: the k-means weight groups have different "
                                         "scales"):
        quantize_net(small)


def test_bad_images_raise():
    wl = _workload("binary")
    with pytest.raises(ValueError, match=r"images must have shape \(N, 8, 8\), not \(2, 7, 8\)"):
        run_int_net(wl.qnet, np.zeros((2, 7, 8), dtype=np.int64))
    with pytest.raises(ValueError, match=r"activation codes must be in \[-128, 127\]"):
        run_int_net(wl.qnet, np.full((1, 8, 8), 300))


def test_bn_reestimation_helps_w4a4_and_bad_bits():
    wl = _workload("adder")
    sp = load_digits_split()
    raw = quantize_net(wl.net, bits=4, reestimate=False)
    acc_raw = float((run_int_net(raw, sp.test_images).argmax(1) == sp.test_labels).mean())
    acc = float((run_int_net(wl.qnet, sp.test_images).argmax(1) == sp.test_labels).mean())
    assert acc >= acc_raw
    with pytest.raises(ValueError, match=r"bits must be one of \(4, 6, 8\) for the adder net, "
                                         "not 5"):
        quantize_net(wl.net, bits=5)


def test_shipped_weights_are_used_and_training_reproduces_their_kind(monkeypatch, tmp_path):
    """load_trained reads the shipped nets (no training, no cache); the recipe still trains a
    net of the same structure from scratch (one epoch here)."""
    from nmaccel.model import conv_nets
    monkeypatch.setenv("NMACCEL_CACHE", str(tmp_path))
    for kind in ("adder", "binary"):
        assert (conv_nets.SHIPPED / f"conv_{kind}_seed0_v{conv_nets.TRAIN_VERSION}.pt").exists()
        net = conv_nets.load_trained(kind)
        assert not list(tmp_path.glob("*.pt"))                 # nothing trained or cached
        fresh = conv_nets.train_net(kind, seed=0, epochs=1)
        assert fresh.state_dict().keys() == net.state_dict().keys()
