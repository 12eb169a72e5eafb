"""AdaBin binary conv (2208.08084): float forward, STE gradients, XNOR/popcount reference."""

import pytest
import torch

from nmaccel.model.adabin import (
    AdaBinConv2d,
    adabin_conv_export,
    adabin_conv_popcount,
    adabin_export,
    adabin_popcounts,
    sign_ste,
)


def _layer(seed, c=4, o=6, k=3, stride=1, padding=1, dtype=torch.float64):
    torch.manual_seed(seed)
    layer = AdaBinConv2d(c, o, k, stride=stride, padding=padding).to(dtype)
    with torch.no_grad():
        layer.weight.add_(0.3 * torch.randn(o, 1, 1, 1, dtype=dtype))   # nonzero beta_w
        layer.alpha_a.fill_(0.7)
        layer.beta_a.fill_(0.15)
    return layer


def test_binarization_formulas():
    layer = _layer(0)
    w = layer.weight.detach()
    flat = w.reshape(w.shape[0], -1)
    beta, alpha = flat.mean(1), flat.std(1, unbiased=False)
    wb = layer.binary_weight().detach()
    for o in range(w.shape[0]):
        vals = set(torch.unique(wb[o]).tolist())
        assert vals <= {float(alpha[o] + beta[o]), float(-alpha[o] + beta[o])}
        torch.testing.assert_close(wb[o] > beta[o], w[o] > beta[o])
    x = torch.tensor([-1.0, 0.15, 0.1500001, 2.0], dtype=torch.float64)
    ab = layer.binary_activation(x).detach()
    torch.testing.assert_close(ab, 0.7 * (torch.tensor([-1.0, -1.0, 1.0, 1.0]).double() + 0.15))
    assert layer.act_bits(x).tolist() == [False, False, True, True]   # tie -> 0


def test_ste_gradients_flow():
    layer = _layer(1)
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    layer(x).square().sum().backward()
    for p in (layer.weight, layer.alpha_a, layer.beta_a):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    u = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0], requires_grad=True)
    sign_ste(u, 1.0).sum().backward()
    assert u.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]
    u.grad = None
    sign_ste(u).sum().backward()
    assert u.grad.tolist() == [1.0] * 5


@pytest.mark.parametrize("stride,padding,k", [(1, 1, 3), (2, 1, 3), (1, 2, 3), (1, 0, 3),
                                              (1, 1, 1)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_popcount_equals_float_conv(stride, padding, k, dtype):
    layer = _layer(2, k=k, stride=stride, padding=padding, dtype=dtype)
    x = torch.randn(3, 4, 7, 6, dtype=dtype)
    x[0, 0, 0, :3] = 0.15          # exact ties at beta_a
    with torch.no_grad():
        y_f = layer(x).double()
    exp = adabin_export(layer)
    y_i = adabin_conv_export(layer.act_bits(x), exp)
    assert y_i.shape == y_f.shape
    scale = float(y_f.abs().max())
    assert float((y_i - y_f).abs().max()) <= 1e-4 * scale
    # interior positions use the constant C_o
    if padding == 0:
        X, Pa, _, _ = adabin_popcounts(layer.act_bits(x), exp.q, stride, padding)
        y_c = exp.A.reshape(1, -1, 1, 1) * X + exp.B.reshape(1, -1, 1, 1) * Pa + \
            exp.C.reshape(1, -1, 1, 1)
        assert float((y_c - y_f).abs().max()) <= 1e-4 * scale


def test_padding_masks_counts():
    p = torch.ones(1, 1, 3, 3, dtype=torch.bool)
    q = torch.ones(2, 1, 3, 3, dtype=torch.bool)
    q[1, 0, 0, 0] = False
    X, Pa, N, Pw = adabin_popcounts(p, q, 1, 1)
    assert N[0, 0].tolist() == [[4, 6, 4], [6, 9, 6], [4, 6, 4]]
    assert Pa[0, 0].tolist() == N[0, 0].tolist()
    assert Pw[0, 0].tolist() == N[0, 0].tolist()
    # q[1] top-left tap is 0; it is valid only at output positions (1..2, 1..2)
    assert Pw[0, 1].tolist() == [[4, 6, 4], [6, 8, 5], [4, 5, 3]]
    assert X[0, 1].tolist() == Pw[0, 1].tolist()


def test_bad_inputs_raise():
    q = torch.ones(2, 3, 3, 3, dtype=torch.bool)
    p = torch.ones(1, 3, 5, 5, dtype=torch.bool)
    ones = torch.ones(2)
    with pytest.raises(ValueError, match="bool or integer"):
        adabin_popcounts(p.float(), q)
    with pytest.raises(ValueError, match="0/1"):
        adabin_popcounts(p.long() * 2, q)
    with pytest.raises(ValueError, match="4-D"):
        adabin_popcounts(p[0], q)
    with pytest.raises(ValueError, match="channel mismatch"):
        adabin_popcounts(p[:, :2], q)
    with pytest.raises(ValueError, match="one per output channel"):
        adabin_conv_popcount(p, q, torch.ones(3), ones, ones, ones)
    with pytest.raises(ValueError, match="AdaBinConv2d"):
        adabin_export(torch.nn.Conv2d(3, 2, 3))
    with pytest.raises(ValueError, match="channel mismatch"):
        AdaBinConv2d(3, 2, 3)(torch.rand(1, 4, 5, 5))


def test_tiny_adabin_net_learns_digits():
    datasets = pytest.importorskip("sklearn.datasets")
    d = datasets.load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    t = torch.tensor(d.target)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(t), generator=g)
    tr, te = perm[:1400], perm[1400:]
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.BatchNorm2d(16),      # first conv FP
        AdaBinConv2d(16, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.PReLU(16),
        torch.nn.MaxPool2d(2),
        AdaBinConv2d(16, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.PReLU(16),
        torch.nn.Flatten(), torch.nn.Linear(16 * 16, 10))
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    for _ in range(3):
        for b in torch.split(tr[torch.randperm(len(tr), generator=g)], 64):
            loss = torch.nn.functional.cross_entropy(net(x[b]), t[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        acc = (net(x[te]).argmax(1) == t[te]).float().mean().item()
    print(f"digits test accuracy {acc:.3f}")
    assert acc >= 0.7, acc   # sanity: it learns (chance is 0.1)
