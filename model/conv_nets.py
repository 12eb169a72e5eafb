"""Digits workloads of the conv engine: a small adder CNN and a small AdaBin CNN.

Both nets take the 8×8 digits (pixels 0..16, fed to the float nets as pixel/16) and keep the
first conv and the classifier in int8 (multiplier layers), as AdderNet and AdaBin do:

``adder``   conv3x3(1→16, p1) BN ReLU → adder3x3(16→32, s2, p1) BN ReLU →
            adder3x3(32→32, s2, p1) BN ReLU → flatten(128) → linear(128→10)
``binary``  conv3x3(1→16, p1) BN → AdaBin3x3(16→32, s2, p1) BN →
            AdaBin3x3(32→32, s2, p1) BN → flatten(128) → linear(128→10)

Training is deterministic (fixed seed, one thread) and takes a few seconds on a CPU; the
trained float state is cached under the user cache directory (``NMACCEL_CACHE`` or
``~/.cache/nmaccel``) keyed by the net and seed.

Quantization and lowering to the engine
    :func:`quantize_net` turns a trained net into a list of :class:`ConvLayerJob` (the
    engine's per-layer program, :mod:`nmaccel.model.conv_ref`) whose integer reference
    (:func:`run_int_net`) is what the RTL must reproduce bit for bit:

    * int8 layers: per-output-channel symmetric int8 weights (per-tensor for the
      classifier, so that its 32-bit outputs compare as logits), pixels as int8;
    * adder layers (arXiv:2212.10200): outlier clamp A = 99.94th percentile, k-means weight
      groups with shared scales, lossless range clamp folded into the bias, n-bit weights
      and activations, then BatchNorm re-estimation on the training set with the
      quantized forward (:func:`reestimate_bn`);
    * AdaBin layers: weight bits + per-channel (A, B, Cn, Cp) with padding masks
      (:mod:`nmaccel.model.adabin`), BN and the next layer's threshold folded into
      integer coefficients; the next layer's activation bit is ``v > 0``.

    The engine quantizes its output for ONE next-layer scale, so an adder layer's groups
    must share the activation scale: ``quantize_net`` passes ``groups`` to the PTQ and, if
    the k-means groups end up with different scales, runs each group of output channels
    as its own engine job with its own input quantization (see :func:`quantize_net`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from nmaccel.cachekey import cache_dir as _cache_dir

from .adabin import AdaBinConv2d, adabin_export
from .adder import AdderConv2d, activation_range, quantize_adder_layer
from .conv_ref import ConvLayerJob, im2col_job, layer_input, run_job
from .digits import load_digits_split
from .quant import quantize_multiplier

__all__ = ["NETS", "make_net", "train_net", "load_trained", "QuantNet", "quantize_net",
           "run_int_net", "float_accuracy", "reestimate_bn", "cache_dir", "build_workload",
           "Workload"]

NETS = ("adder", "binary")
PIXEL_MAX = 16


def cache_dir() -> Path:
    """Where trained nets are cached (:func:`nmaccel.cachekey.cache_dir`)."""
    return _cache_dir()


class DigitsConvNet(nn.Module):
    """See the module docstring; ``kind`` is ``"adder"`` or ``"binary"``."""

    def __init__(self, kind: str, c1: int = 16, c2: int = 32, c3: int = 32):
        super().__init__()
        if kind not in NETS:
            raise ValueError(f"net must be one of {NETS}, not {kind!r}")
        self.kind = kind
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1, bias=True)
        self.bn1 = nn.BatchNorm2d(c1)
        if kind == "adder":
            self.conv2 = AdderConv2d(c1, c2, 3, stride=2, padding=1)
            self.conv3 = AdderConv2d(c2, c3, 3, stride=2, padding=1)
        else:
            self.conv2 = AdaBinConv2d(c1, c2, 3, stride=2, padding=1)
            self.conv3 = AdaBinConv2d(c2, c3, 3, stride=2, padding=1)
        self.bn2 = nn.BatchNorm2d(c2)
        self.bn3 = nn.BatchNorm2d(c3)
        self.fc = nn.Linear(c3 * 4, 10)

    def forward(self, x):
        act = F.relu if self.kind == "adder" else (lambda t: t)
        x = act(self.bn1(self.conv1(x)))
        x = act(self.bn2(self.conv2(x)))
        x = act(self.bn3(self.conv3(x)))
        return self.fc(x.flatten(1))


def make_net(kind: str, seed: int = 0) -> DigitsConvNet:
    torch.manual_seed(seed)
    return DigitsConvNet(kind)


def train_net(kind: str, seed: int = 0, epochs: int | None = None, verbose: bool = False):
    """Train the ``kind`` net on the digits training split; returns the net (eval mode)."""
    torch.set_num_threads(1)
    net = make_net(kind, seed)
    xtr, ytr, _, _ = load_digits_split().tensors(1.0 / PIXEL_MAX)
    g = torch.Generator().manual_seed(seed)
    if kind == "adder":
        # AdderNet recipe: SGD-Nesterov and the adaptive local learning rate (eta = 0.2)
        epochs = 20 if epochs is None else epochs
        net.conv2.eta = net.conv3.eta = 0.2
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    else:
        epochs = 60 if epochs is None else epochs
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    for ep in range(epochs):
        net.train()
        perm = torch.randperm(xtr.shape[0], generator=g)
        for i in range(0, xtr.shape[0], 64):
            idx = perm[i:i + 64]
            loss = F.cross_entropy(net(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        if verbose:
            print(f"{kind} epoch {ep} loss {float(loss):.3f}")
    net.eval()
    return net


TRAIN_VERSION = 1
#: Nets trained by :func:`train_net` (seed 0, this ``TRAIN_VERSION``; torch 2.13 CPU, one
#: thread) and shipped with the package: float training is not bit-reproducible across CPUs
#: (the AdaBin net's test accuracy moved between 96.4 % and 97.8 % over seeds and machines),
#: so every figure built on these nets comes from the same weights everywhere.
SHIPPED = Path(__file__).resolve().parent / "trained"


def load_trained(kind: str, seed: int = 0, cache: bool = True) -> DigitsConvNet:
    """The trained ``kind`` net: the shipped weights (:data:`SHIPPED`) if present, else from
    the cache, else trained (and cached)."""
    if kind not in NETS:
        raise ValueError(f"net must be one of {NETS}, not {kind!r}")
    name = f"conv_{kind}_seed{seed}_v{TRAIN_VERSION}.pt"
    net = make_net(kind, seed)
    shipped = SHIPPED / name
    if shipped.exists():
        net.load_state_dict(torch.load(shipped, weights_only=True))
        net.eval()
        return net
    path = cache_dir() / name
    if cache and path.exists():
        try:
            net.load_state_dict(torch.load(path, weights_only=True))
            net.eval()
            return net
        except Exception:  # a stale or truncated cache file: retrain
            pass
    net = train_net(kind, seed)
    if cache:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save(net.state_dict(), tmp)
        os.replace(tmp, path)
    return net


# ----------------------------------------------------------------------------- helpers
def _bn_affine(bn: nn.BatchNorm2d):
    """Eval-mode BN as z = gamma_hat * y + beta_hat (float64 per channel)."""
    g = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
    b = bn.bias.detach().double() - g * bn.running_mean.double()
    return g.numpy(), b.numpy()


def _requant_params(f, g, mult_bits):
    """Per channel: out = f·acc + g  ->  c0 = sign f, bias = round(g/|f|), mult/shift ≈ |f|."""
    c0 = np.sign(f).astype(np.int64)
    bias = np.zeros(len(f), dtype=np.int64)
    mult = np.zeros(len(f), dtype=np.int64)
    shift = np.zeros(len(f), dtype=np.int64)
    for o in range(len(f)):
        if f[o] == 0:
            bias[o], mult[o], shift[o] = int(round(g[o])), 1, 0
            continue
        bias[o] = int(np.round(g[o] / abs(f[o])))
        mult[o], shift[o] = quantize_multiplier(float(abs(f[o])), mult_bits)
    coef = np.zeros((len(f), 4), dtype=np.int64)
    coef[:, 0] = c0
    return coef, bias, mult, shift


def _threshold_params(f, h):
    """Per channel: bit = [f·acc + h > 0] exactly as [c0·acc + bias > 0] (integer acc)."""
    coef = np.zeros((len(f), 4), dtype=np.int64)
    bias = np.zeros(len(f), dtype=np.int64)
    for o in range(len(f)):
        if f[o] == 0:
            bias[o] = 1 if h[o] > 0 else 0
        else:
            coef[o, 0] = 1 if f[o] > 0 else -1
            bias[o] = math.ceil(h[o] / abs(f[o]))
    return coef, bias


def _int8_per_channel(w: torch.Tensor):
    w = w.detach().double()
    s = w.abs().reshape(w.shape[0], -1).amax(1).clamp(min=1e-12) / 127.0
    wq = torch.round(w / s.reshape(-1, *([1] * (w.dim() - 1)))).clamp(-127, 127)
    return wq.to(torch.int64).numpy(), s.numpy()


def _scaled_coefs(e, h, coef_bits, shift_for_requant: bool):
    """Integer coefficients of v = Σ e_j S_j + h, scaled per channel by 2^F (F as large as
    ``coef_bits`` allows). Returns coef, bias, F."""
    cmax = (1 << (coef_bits - 1)) - 1
    o = e.shape[0]
    coef = np.zeros((o, 4), dtype=np.int64)
    bias = np.zeros(o, dtype=np.int64)
    F_ = np.zeros(o, dtype=np.int64)
    for i in range(o):
        m = float(np.abs(e[i]).max())
        F = 0 if m == 0 else int(math.floor(math.log2(cmax / m)))
        F = max(0, min(F, 40))
        coef[i] = np.round(e[i] * 2.0 ** F).astype(np.int64)
        bias[i] = int(round(h[i] * 2.0 ** F))
        F_[i] = F
    return coef, bias, F_


# ----------------------------------------------------------------------------- quantization
@dataclass
class QuantNet:
    """An integer digits net: engine jobs in order (the last one's ``v`` are the logits);
    ``inputs[i]`` says how job i's input is made from the previous output (or the image):
    ``direct``, ``flatten`` (to (C·H·W, 1, 1)) or ``im2col`` (see
    :func:`nmaccel.model.conv_ref.layer_input`)."""
    kind: str
    jobs: list
    inputs: list
    bits: int
    info: dict = field(default_factory=dict)


def _fq_adder(x, w_deq, bias, s, L, stride, padding):
    """Fake-quant adder conv: activation codes dequantized (clip to [0, s]) vs dequantized
    weights + lossless bias; equals -(s/L)·Σ|aq − 2wq| + b exactly (float64)."""
    from .adder import adder_conv2d
    xq = torch.round(x * L / s).clamp(0, L) * (s / L)
    return adder_conv2d(xq, w_deq, stride, padding) + bias.reshape(1, -1, 1, 1)


@torch.no_grad()
def reestimate_bn(forward, bns, data, batch: int = 256):
    """BatchNorm re-estimation: reset ``bns`` and recompute their running statistics as the
    exact average over ``data`` of the batch statistics seen by ``forward`` (the quantized
    forward), with the BN layers in training mode."""
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None   # cumulative moving average
        bn.train()
    for i in range(0, data.shape[0], batch):
        forward(data[i:i + batch])
    for bn in bns:
        bn.eval()


def _batched(fn, x, batch: int = 256):
    """``fn`` over ``x`` in batches (bounds the memory of the unfolded adder layers)."""
    return torch.cat([fn(x[i:i + batch]) for i in range(0, x.shape[0], batch)])


def quantize_net(net: DigitsConvNet, bits: int = 4, groups: int = 4, coef_bits: int = 16,
                 mult_bits: int = 16, percentile: float = 99.94,
                 reestimate: bool = True, im2col_first: bool = False) -> QuantNet:
    """Lower a trained digits net to engine jobs (module docstring). ``bits`` is the adder
    layers' n (4, 6 or 8); the AdaBin net ignores it. ``reestimate=False`` skips the BN
    re-estimation of the adder net (to measure what it buys). ``im2col_first`` runs the
    first conv (C_in = 1) as a 1×1 layer on the host-expanded 3×3 windows (9 channels), so
    it fills 9 PE lanes instead of 1 (same integers, fewer cycles)."""
    if net.kind == "adder" and bits not in (4, 6, 8):
        raise ValueError(f"bits must be one of (4, 6, 8) for the adder net, not {bits!r}")
    import copy
    torch.set_num_threads(1)
    net = copy.deepcopy(net).double().eval()
    xtr, _, _, _ = load_digits_split().tensors(1.0 / PIXEL_MAX)
    xtr = xtr.double()
    w1q, s1 = _int8_per_channel(net.conv1.weight)
    b1 = net.conv1.bias.detach().double().numpy()
    conv1_deq = torch.from_numpy(w1q * s1.reshape(-1, 1, 1, 1))

    def conv1(x):
        return F.conv2d(x, conv1_deq, torch.from_numpy(b1), padding=1)

    info = {}
    if net.kind == "adder":
        with torch.no_grad():
            a1 = _batched(lambda t: F.relu(net.bn1(net.conv1(t))), xtr)
            A2 = activation_range(a1, percentile)
            a2 = _batched(lambda t: F.relu(net.bn2(net.conv2(t))), a1)
            A3 = activation_range(a2, percentile)
        L = (1 << bits) - 1
        qp2 = quantize_adder_layer(net.conv2.weight, A2, bits, groups)
        qp3 = quantize_adder_layer(net.conv3.weight, A3, bits, groups)
        for name, qp in (("conv2", qp2), ("conv3", qp3)):
            sc = qp.channel_scale
            if not torch.all(sc == sc[0]):
                raise ValueError(
                    f"{name}: the k-means weight groups have different scales "
                    f"{sorted(set(qp.scale.tolist()))}; the engine quantizes a layer's input "
                    "with one scale (groups collapse when max|w| > A in every group)")
        s2, s3 = float(qp2.scale[0]), float(qp3.scale[0])
        w2d = qp2.wq.double() * (2 * s2 / L)
        w3d = qp3.wq.double() * (2 * s3 / L)
        info.update(A2=A2, A3=A3, groups2=int(qp2.scale.numel()), groups3=int(qp3.scale.numel()))

        def fq_body(x):
            z1 = F.relu(net.bn1(conv1(x)))
            z2 = F.relu(net.bn2(_fq_adder(z1, w2d, qp2.bias, s2, L, 2, 1)))
            z3 = F.relu(net.bn3(_fq_adder(z2, w3d, qp3.bias, s3, L, 2, 1)))
            return z3

        if reestimate:
            reestimate_bn(fq_body, [net.bn1, net.bn2, net.bn3], xtr)
        with torch.no_grad():
            Afc = activation_range(_batched(fq_body, xtr), percentile)
        sx = Afc / 127.0
        g1, be1 = _bn_affine(net.bn1)
        g2, be2 = _bn_affine(net.bn2)
        g3, be3 = _bn_affine(net.bn3)
        jobs = []
        # conv1 (int8) -> adder codes for conv2 (scale s2, n bits, unsigned: ReLU)
        f = g1 * s1 / PIXEL_MAX * L / s2
        gg = (g1 * b1 + be1) * L / s2
        coef, bias, mult, shift = _requant_params(f, gg, mult_bits)
        jobs.append(ConvLayerJob("mul", w1q, 8, 8, coef, bias, mult, shift, stride=1, padding=1,
                                 bits=8, out="requant", out_bits=bits, out_signed=False,
                                 name="conv1"))
        # conv2 (adder) -> codes for conv3
        f = -g2 * s2 / L * L / s3
        gg = (g2 * qp2.bias.numpy() + be2) * L / s3
        coef, bias, mult, shift = _requant_params(f, gg, mult_bits)
        jobs.append(ConvLayerJob("adder", qp2.wq.numpy(), 8, 8, coef, bias, mult, shift,
                                 stride=2, padding=1, bits=bits, out="requant", out_bits=bits,
                                 out_signed=False, name="conv2"))
        # conv3 (adder) -> int8 codes (ReLU: unsigned 7 bits) for the classifier
        f = -g3 * s3 / L / sx
        gg = (g3 * qp3.bias.numpy() + be3) / sx
        coef, bias, mult, shift = _requant_params(f, gg, mult_bits)
        jobs.append(ConvLayerJob("adder", qp3.wq.numpy(), 4, 4, coef, bias, mult, shift,
                                 stride=2, padding=1, bits=bits, out="requant", out_bits=7,
                                 out_signed=False, name="conv3"))
    else:
        with torch.no_grad():
            z3 = net.bn3(net.conv3(net.bn2(net.conv2(net.bn1(net.conv1(xtr))))))
            sx = activation_range(z3, percentile) / 127.0
        g1, be1 = _bn_affine(net.bn1)
        g2, be2 = _bn_affine(net.bn2)
        g3, be3 = _bn_affine(net.bn3)
        e2, e3 = adabin_export(net.conv2), adabin_export(net.conv3)
        jobs = []
        f = g1 * s1 / PIXEL_MAX
        h = g1 * b1 + be1 - e2.beta_a
        coef, bias = _threshold_params(f, h)
        one = np.ones(len(f), dtype=np.int64)
        jobs.append(ConvLayerJob("mul", w1q, 8, 8, coef, bias, one, 0 * one, stride=1,
                                 padding=1, bits=8, out="binarize", out_bits=1,
                                 out_signed=False, name="conv1"))
        # conv2 (binary) -> bits for conv3: [γ̂2 y + β̂2 > β_a3]
        e = g2[:, None] * np.stack([e2.A, e2.B, e2.Cn, e2.Cp], 1)
        coef, bias, _ = _scaled_coefs(e, be2 - e3.beta_a, coef_bits, False)
        one = np.ones(len(g2), dtype=np.int64)
        jobs.append(ConvLayerJob("binary", e2.q.numpy().astype(np.int64), 8, 8, coef, bias,
                                 one, 0 * one, stride=2, padding=1, bits=1, out="binarize",
                                 out_bits=1, out_signed=False, name="conv2"))
        # conv3 (binary) -> int8 codes round(z3 / sx) for the classifier
        e = g3[:, None] * np.stack([e3.A, e3.B, e3.Cn, e3.Cp], 1) / sx
        coef, bias, Fs = _scaled_coefs(e, be3 / sx, coef_bits, True)
        jobs.append(ConvLayerJob("binary", e3.q.numpy().astype(np.int64), 4, 4, coef, bias,
                                 np.ones(len(g3), dtype=np.int64), Fs, stride=2, padding=1,
                                 bits=1, out="requant", out_bits=8, out_signed=True,
                                 name="conv3"))
    # classifier: int8 per-tensor weights, v = acc + round(b / (s_w s_x)) ∝ logits
    wfc = net.fc.weight.detach().double()
    sfc = float(wfc.abs().max()) / 127.0
    wq = torch.round(wfc / sfc).clamp(-127, 127).to(torch.int64).numpy()
    bfc = net.fc.bias.detach().double().numpy()
    coef = np.zeros((10, 4), dtype=np.int64)
    coef[:, 0] = 1
    one = np.ones(10, dtype=np.int64)
    jobs.append(ConvLayerJob("mul", wq.reshape(10, -1, 1, 1), 1, 1, coef,
                             np.round(bfc / (sfc * sx)).astype(np.int64), one, 0 * one,
                             bits=8, out="requant", out_bits=8, out_signed=True, name="fc"))
    inputs = ["direct", "direct", "direct", "flatten"]
    if im2col_first:
        jobs[0] = im2col_job(jobs[0])
        inputs[0] = "im2col"
    return QuantNet(net.kind, jobs, inputs, bits if net.kind == "adder" else 1, info)


def run_int_net(qnet: QuantNet, images) -> np.ndarray:
    """Integer reference of the whole net: logits ``v`` (N, 10) int64 for pixel images
    (N, 8, 8) in 0..16."""
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (8, 8):
        raise ValueError(f"images must have shape (N, 8, 8), not {images.shape}")
    out = []
    for img in images:
        x = img.astype(np.int64)[None]
        v = None
        for job, how in zip(qnet.jobs, qnet.inputs):
            v, x = run_job(job, layer_input(job, x, how), v_bits=32)
        out.append(v.reshape(-1))
    return np.stack(out)


@torch.no_grad()
def float_accuracy(net: DigitsConvNet, images, labels) -> float:
    x = torch.from_numpy(np.asarray(images, dtype=np.float32) / PIXEL_MAX).unsqueeze(1)
    return float((net(x).argmax(1).numpy() == np.asarray(labels)).mean())


@dataclass
class Workload:
    kind: str
    net: DigitsConvNet
    qnet: QuantNet


@lru_cache(maxsize=8)
def build_workload(kind: str, bits: int = 4, seed: int = 0,
                   im2col_first: bool = False) -> Workload:
    """Trained (cached on disk) float net and its integer engine program (memoized in the
    process: treat the result as read-only)."""
    net = load_trained(kind, seed)
    return Workload(kind, net, quantize_net(net, bits=bits, im2col_first=im2col_first))
