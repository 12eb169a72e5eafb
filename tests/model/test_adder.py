"""AdderNet float layer, gradient rules and post-training integer quantization (2212.10200)."""

import numpy as np
import pytest
import torch

from nmaccel.model.adder import (
    AdderConv2d,
    _AdderFn,
    activation_range,
    adder_acc_bits,
    adder_conv2d,
    adder_conv2d_int,
    adder_conv2d_quantized,
    dequant,
    kmeans_1d,
    lossless_clamp_bias,
    quantize_adder_activation,
    quantize_adder_layer,
)


def naive_adder(x, w, stride, padding):
    x = torch.nn.functional.pad(x, (padding,) * 4)
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    ho, wo = (h - kh) // stride + 1, (wd - kw) // stride + 1
    y = torch.zeros(n, o, ho, wo, dtype=x.dtype)
    for b in range(n):
        for oc in range(o):
            for i in range(ho):
                for j in range(wo):
                    patch = x[b, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
                    y[b, oc, i, j] = -(patch - w[oc]).abs().sum()
    return y


@pytest.mark.parametrize("stride,padding", [(1, 0), (1, 1), (2, 1)])
def test_float_adder_matches_naive_loop(stride, padding):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 7, 6, generator=g, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(adder_conv2d(x, w, stride, padding),
                               naive_adder(x, w, stride, padding))
    layer = AdderConv2d(3, 4, 3, stride=stride, padding=padding).double()
    with torch.no_grad():
        layer.weight.copy_(w)
    torch.testing.assert_close(layer(x), naive_adder(x, w, stride, padding))


def test_addernet_gradient_rules():
    g = torch.Generator().manual_seed(1)
    cols = torch.randn(2, 5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    wc = torch.randn(4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    go = torch.randn(2, 4, 3, generator=g, dtype=torch.float64)
    _AdderFn.apply(cols, wc, None).backward(go)
    diff = cols.detach()[:, None] - wc.detach()[None, :, :, None]          # X - W (N,O,K,L)
    exp_w = (go[:, :, None, :] * diff).sum((0, 3))
    exp_x = (go[:, :, None, :] * (-diff).clamp(-1, 1)).sum(1)
    torch.testing.assert_close(wc.grad, exp_w)
    torch.testing.assert_close(cols.grad, exp_x)
    # adaptive scaling: rescaled to eta*sqrt(numel)/||g||
    wc2 = wc.detach().clone().requires_grad_(True)
    _AdderFn.apply(cols.detach(), wc2, 0.2).backward(go)
    torch.testing.assert_close(wc2.grad, exp_w * 0.2 * np.sqrt(exp_w.numel()) / exp_w.norm())


def test_adder_layer_trains_on_toy_problem():
    torch.manual_seed(0)
    x = torch.rand(64, 1, 5, 5)
    t = (x[:, 0, 2, 2] > 0.5).long()
    net = torch.nn.Sequential(AdderConv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4),
                              torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(100, 2))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    losses = []
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(net(x), t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_lossless_range_clamp_identity():
    g = torch.Generator().manual_seed(2)
    A = 1.3
    x = torch.rand(1000, generator=g, dtype=torch.float64) * A          # x in [0, A]
    x[0], x[1] = 0.0, A
    w = torch.randn(1000, generator=g, dtype=torch.float64) * 2.0        # many |w| > A
    lhs = (x - w).abs()
    rhs = (x - w.clamp(-A, A)).abs() + (w.abs() - A).clamp(min=0)
    torch.testing.assert_close(lhs, rhs, rtol=0, atol=1e-12)
    # and at layer level: bias reproduces the float conv exactly for x in [0, A]
    xx = torch.rand(2, 3, 6, 6, generator=g, dtype=torch.float64) * A
    ww = torch.randn(5, 3, 3, 3, generator=g, dtype=torch.float64) * 2.0
    y = adder_conv2d(xx, ww)
    yc = adder_conv2d(xx, ww.clamp(-A, A)) + lossless_clamp_bias(ww, A).reshape(1, -1, 1, 1)
    torch.testing.assert_close(y, yc, rtol=0, atol=1e-10)


def test_kmeans_1d_deterministic_and_sorted():
    v = np.array([0.1, 0.12, 0.11, 1.0, 1.05, 2.0, 2.1, 5.0])
    lab, cen = kmeans_1d(v, 4)
    np.testing.assert_array_equal(lab, [0, 0, 0, 1, 1, 2, 2, 3])
    assert np.all(np.diff(cen) > 0)
    lab2, _ = kmeans_1d(v, 4)
    np.testing.assert_array_equal(lab, lab2)
    lab3, cen3 = kmeans_1d([0.5, 0.5, 0.5], 4)   # fewer distinct values than k
    np.testing.assert_array_equal(lab3, [0, 0, 0])
    assert cen3.shape == (1,)


def _int_case(seed, wscale):
    g = torch.Generator().manual_seed(seed)
    x = torch.relu(torch.randn(2, 4, 8, 8, generator=g, dtype=torch.float64))
    # per-channel magnitudes spread so k-means finds several groups
    w = torch.randn(8, 4, 3, 3, generator=g, dtype=torch.float64) * \
        (wscale * torch.linspace(0.2, 1.5, 8, dtype=torch.float64)).reshape(-1, 1, 1, 1)
    return x, w


@pytest.mark.parametrize("wscale", [2.0, 0.4])
def test_integer_path_approximates_float_at_8_bits(wscale):
    x, w = _int_case(3, wscale)
    A = activation_range(x)
    p = quantize_adder_layer(w, A, 8, groups=4)
    assert p.wq.dtype == torch.int64 and p.L == 255
    assert int(p.wq.min()) >= -128 and int(p.wq.max()) <= 127
    assert p.scale.numel() >= 2
    y_q = adder_conv2d_quantized(x, p, stride=1, padding=1)
    # float reference on what the integer path can represent: x clipped to [0, s_g] per group
    # (for groups with s_g = A this is the outlier clamp; the weight clamp is lossless).
    K = w[0].numel()
    for g in range(p.scale.numel()):
        m = p.group == g
        s = float(p.scale[g])
        y_f = adder_conv2d(x.clamp(0, s), w[m], 1, 1)
        # per tap |x L/s - w L/s| and |aq - 2wq| differ by <= 0.5 + 2*0.5 -> bound 1.5 K s/L
        bound = 1.5 * K * s / p.L
        err = (y_q[:, m] - y_f).abs()
        assert float(err.max()) <= bound
        # rounding errors are zero-mean: typical error far below the worst-case bound
        assert float(err.mean()) <= 0.25 * bound
        assert float(err.max()) <= 0.01 * float(y_f.abs().mean())
    # integer identity with explicit accumulators (exact in integers)
    g0 = 0
    m = p.group == g0
    aq = quantize_adder_activation(x, float(p.scale[g0]), 8)
    acc = adder_conv2d_int(aq, p.wq[m], 1, 1)
    naive = -naive_adder(aq.double(), 2 * p.wq[m].double(), 1, 1)
    assert torch.equal(acc, naive.to(torch.int64))


def test_dequant_formula_and_groups_collapse():
    x, w = _int_case(4, 4.0)           # every kernel has max|w| > A -> all s_g = A
    A = 1.0
    p = quantize_adder_layer(w, A, 6, groups=4)
    assert torch.all(p.scale == A)
    assert torch.all(p.bias <= 0) and float(p.bias.min()) < 0
    torch.testing.assert_close(p.bias, lossless_clamp_bias(w, A))
    aq = quantize_adder_activation(x, A, 6)
    acc = adder_conv2d_int(aq, p.wq, 1, 1)
    y = dequant(acc, p)
    torch.testing.assert_close(y, -(A / 63) * acc.double() + p.bias.reshape(1, -1, 1, 1))
    torch.testing.assert_close(y, adder_conv2d_quantized(x, p, 1, 1))


def test_accumulator_width_anchors():
    assert adder_acc_bits(4, 576) == 15
    assert adder_acc_bits(8, 576) == 19


def test_bad_inputs_raise():
    w = torch.randn(4, 3, 3, 3)
    x = torch.rand(1, 3, 5, 5)
    for bits in (3, 9, 0, 8.0, True, "8"):
        with pytest.raises(ValueError, match="bits"):
            quantize_adder_layer(w, 1.0, bits)
        with pytest.raises(ValueError, match="bits"):
            quantize_adder_activation(x, 1.0, bits)
    with pytest.raises(ValueError, match="4-D"):
        quantize_adder_layer(w[0], 1.0, 8)
    for A in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="act_range_A"):
            quantize_adder_layer(w, A, 8)
    with pytest.raises(ValueError, match="groups"):
        quantize_adder_layer(w, 1.0, 8, groups=0)
    with pytest.raises(ValueError, match="s_g"):
        quantize_adder_activation(x, 0.0, 8)
    with pytest.raises(ValueError, match="channel mismatch"):
        adder_conv2d(torch.rand(1, 2, 5, 5), w)
    with pytest.raises(ValueError, match="4-D"):
        adder_conv2d(x[0], w)
    with pytest.raises(ValueError, match="larger than padded"):
        adder_conv2d(torch.rand(1, 3, 2, 2), w)
    with pytest.raises(ValueError, match="stride"):
        adder_conv2d(x, w, stride=0)
    p = quantize_adder_layer(w, 1.0, 8)
    aq = quantize_adder_activation(x, 1.0, 8)
    with pytest.raises(ValueError, match="integer"):
        adder_conv2d_int(aq.float(), p.wq)
    with pytest.raises(ValueError, match="integer"):
        adder_conv2d_int(aq, p.wq.float())
    with pytest.raises(ValueError, match="non-negative"):
        adder_conv2d_int(aq - 1000, p.wq)
    with pytest.raises(ValueError, match="channel mismatch"):
        adder_conv2d_int(aq[:, :2], p.wq)
    with pytest.raises(ValueError, match="acc must be"):
        dequant(torch.zeros(1, 3, 2, 2, dtype=torch.int64), p)
    with pytest.raises(ValueError, match="layer mismatch|channel mismatch"):
        adder_conv2d_quantized(torch.rand(1, 2, 5, 5), p)


@pytest.mark.parametrize("kwargs, message", [
    (dict(in_channels=0, out_channels=4, kernel_size=3), "in_channels must be >= 1, got 0"),
    (dict(in_channels=2, out_channels=0, kernel_size=3), "out_channels must be >= 1, got 0"),
    (dict(in_channels=2, out_channels=4, kernel_size=(3, 0)), "kernel_size must be >= 1, got 0"),
])
def test_conv_layer_constructors_name_the_bad_parameter(kwargs, message):
    from nmaccel.model.adabin import AdaBinConv2d
    from nmaccel.model.adder import AdderConv2d
    for cls in (AdderConv2d, AdaBinConv2d):
        with pytest.raises(ValueError, match=message):
            cls(**kwargs)
