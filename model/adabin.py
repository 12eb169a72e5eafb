"""AdaBin binary convolution (arXiv:2208.08084) and its XNOR/popcount integer reference.

Weights, per output channel o: beta_w = mean(W_o), alpha_w = std(W_o) (population),
``w_b = alpha_w * sign(w - beta_w) + beta_w``.
Activations, per layer, learnable alpha_a (init 1), beta_a (init 0):
``a_b = alpha_a * (sign(x - beta_a) + beta_a)``.
Tie rule (used for both, so that float and integer paths agree bit-exactly):
``sign(u) = +1 if u > 0 else -1``, i.e. bit p = [x > beta_a], q = [w > beta_w]
(q is computed as ``(w - beta_w) > 0`` exactly like the float forward).

STE: the weight sign passes the gradient unchanged (identity); the activation sign passes it
where |x - beta_a| <= 1 (clipped STE, as BNN/ReActNet/AdaBin). alpha_w, beta_w are functions
of W and get their gradients through autograd; alpha_a, beta_a are nn.Parameters.

Integer form (zero padding is not a level: padded taps are masked, so N and P_w depend on the
output position)::

    X = popcount(XNOR(p, q) & valid), P_a = popcount(p & valid),
    N = popcount(valid),             P_w = popcount(q & valid)
    sum a*w = d_a d_w (2X - N) + d_a c_w (2P_a - N) + c_a d_w (2P_w - N) + N c_a c_w
    (d_a = alpha_a, c_a = alpha_a beta_a, d_w = alpha_w, c_w = beta_w)
    y_o = A_o X + B_o P_a + C_o,   A_o = 2 d_a d_w,  B_o = 2 d_a c_w,
    C_o = Cn_o N + Cp_o P_w,       Cn_o = c_a c_w - d_a d_w - d_a c_w - c_a d_w,
                                   Cp_o = 2 c_a d_w
For interior positions (N = K, P_w = popcount(q_o)) C_o is the constant ``C``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .adder import _check_conv_args, conv_layer_params, unfold_int

__all__ = ["AdaBinConv2d", "AdaBinExport", "adabin_export", "adabin_popcounts",
           "adabin_conv_popcount", "adabin_conv_export", "sign_ste"]


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, clip):
        ctx.save_for_backward(u)
        ctx.clip = clip
        return torch.where(u > 0, torch.ones_like(u), -torch.ones_like(u))

    @staticmethod
    def backward(ctx, g):
        (u,) = ctx.saved_tensors
        if ctx.clip is None:
            return g, None
        return g * (u.abs() <= ctx.clip).to(g.dtype), None


def sign_ste(u: torch.Tensor, clip: float | None = None) -> torch.Tensor:
    """+1 if u > 0 else -1; backward identity (clip=None) or gated by |u| <= clip."""
    return _SignSTE.apply(u, clip)


class AdaBinConv2d(nn.Module):
    """AdaBin binary convolution (no bias: the block puts BatchNorm after it)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 act_clip: float = 1.0):
        super().__init__()
        self.weight, self.stride, self.padding = conv_layer_params(
            in_channels, out_channels, kernel_size, stride, padding)
        self.act_clip = act_clip
        self.alpha_a = nn.Parameter(torch.ones(()))
        self.beta_a = nn.Parameter(torch.zeros(()))

    def weight_stats(self, w: torch.Tensor | None = None):
        """(alpha_w, beta_w) per output channel, shaped (O, 1, 1, 1)."""
        w = self.weight if w is None else w
        flat = w.reshape(w.shape[0], -1)
        beta = flat.mean(1)
        alpha = flat.std(1, unbiased=False)
        return alpha.reshape(-1, 1, 1, 1), beta.reshape(-1, 1, 1, 1)

    def binary_weight(self) -> torch.Tensor:
        alpha, beta = self.weight_stats()
        return alpha * sign_ste(self.weight - beta) + beta

    def binary_activation(self, x: torch.Tensor) -> torch.Tensor:
        return self.alpha_a * (sign_ste(x - self.beta_a, self.act_clip) + self.beta_a)

    def act_bits(self, x: torch.Tensor) -> torch.Tensor:
        """Activation bits p = [x > beta_a] (bool), the tie rule of the forward."""
        return (x - self.beta_a).detach() > 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_conv_args(x, self.weight, self.stride, self.padding)
        return F.conv2d(self.binary_activation(x), self.binary_weight(), stride=self.stride,
                        padding=self.padding)

    def extra_repr(self):
        o, c, kh, kw = self.weight.shape
        return f"{c}, {o}, kernel_size=({kh}, {kw}), stride={self.stride}, " \
               f"padding={self.padding}"


@dataclass
class AdaBinExport:
    """q: bool (O, C, kH, kW) weight bits; A, B, C, Cn, Cp: float64 (O,) (see module doc);
    C is the interior-position constant C_o; alpha_w/beta_w per channel; alpha_a/beta_a."""
    q: torch.Tensor
    A: torch.Tensor
    B: torch.Tensor
    C: torch.Tensor
    Cn: torch.Tensor
    Cp: torch.Tensor
    alpha_w: torch.Tensor
    beta_w: torch.Tensor
    alpha_a: float
    beta_a: float
    stride: tuple
    padding: tuple


@torch.no_grad()
def adabin_export(layer: AdaBinConv2d) -> AdaBinExport:
    if not isinstance(layer, AdaBinConv2d):
        raise ValueError(f"expected an AdaBinConv2d, got {type(layer).__name__}")
    alpha, beta = layer.weight_stats()
    q = (layer.weight - beta) > 0                       # same computation as the forward
    d_w = alpha.reshape(-1).double()
    c_w = beta.reshape(-1).double()
    d_a = float(layer.alpha_a)
    c_a = float(layer.alpha_a * layer.beta_a)
    K = q[0].numel()
    A = 2 * d_a * d_w
    B = 2 * d_a * c_w
    Cp = 2 * c_a * d_w
    Cn = c_a * c_w - d_a * d_w - d_a * c_w - c_a * d_w
    C = Cn * K + Cp * q.reshape(q.shape[0], -1).sum(1).double()
    return AdaBinExport(q=q, A=A, B=B, C=C, Cn=Cn, Cp=Cp, alpha_w=d_w, beta_w=c_w,
                        alpha_a=d_a, beta_a=float(layer.beta_a), stride=layer.stride,
                        padding=layer.padding)


def _check_bits_tensor(t, name):
    if not isinstance(t, torch.Tensor) or t.dim() != 4:
        raise ValueError(f"{name} must be a 4-D bit tensor")
    if t.dtype.is_floating_point or t.dtype.is_complex:
        raise ValueError(f"{name} must be bool or integer 0/1, got {t.dtype}")
    if t.dtype != torch.bool and t.numel() and (int(t.min()) < 0 or int(t.max()) > 1):
        raise ValueError(f"{name} must contain only 0/1")
    return t.to(torch.bool)


def adabin_popcounts(p_bits, q_bits, stride=1, padding=0):
    """Integer counts over VALID taps: X (N,O,Ho,Wo), P_a (N,1,Ho,Wo), N (1,1,Ho,Wo),
    P_w (1,O,Ho,Wo), all int64. Padded taps are masked out."""
    p = _check_bits_tensor(p_bits, "p_bits")
    q = _check_bits_tensor(q_bits, "q_bits")
    s, pd, ho, wo = _check_conv_args(p, q, stride, padding, "p_bits", "q_bits")
    o, kh, kw = q.shape[0], q.shape[2], q.shape[3]
    n = p.shape[0]
    pc = unfold_int(p.to(torch.uint8), kh, kw, s, pd).bool()                    # (N, K, L)
    valid = unfold_int(torch.ones(1, *p.shape[1:], dtype=torch.uint8), kh, kw, s, pd).bool()
    qc = q.reshape(o, -1)                                                       # (O, K)
    X = torch.empty(n, o, pc.shape[2], dtype=torch.int64)
    Pw = torch.empty(1, o, pc.shape[2], dtype=torch.int64)
    for i in range(o):
        xnor = ~(pc ^ qc[i][None, :, None])
        X[:, i] = (xnor & valid).sum(1)
        Pw[:, i] = (qc[i][None, :, None] & valid).sum(1)
    Pa = (pc & valid).sum(1, keepdim=True)
    Nv = valid.sum(1, keepdim=True)
    shp = (ho, wo)
    return (X.reshape(n, o, *shp), Pa.reshape(n, 1, *shp), Nv.reshape(1, 1, *shp),
            Pw.reshape(1, o, *shp))


def adabin_conv_popcount(p_bits, q_bits, A, B, Cn, Cp, stride=1, padding=0) -> torch.Tensor:
    """y_o = A_o X + B_o P_a + Cn_o N + Cp_o P_w (float64), counts over valid taps only."""
    X, Pa, Nv, Pw = adabin_popcounts(p_bits, q_bits, stride, padding)
    o = X.shape[1]
    coef = []
    for name, c in (("A", A), ("B", B), ("Cn", Cn), ("Cp", Cp)):
        c = torch.as_tensor(c, dtype=torch.float64).reshape(-1)
        if c.numel() != o:
            raise ValueError(f"{name} must have {o} entries (one per output channel), "
                             f"got {c.numel()}")
        coef.append(c.reshape(1, o, 1, 1))
    A, B, Cn, Cp = coef
    return A * X + B * Pa + Cn * Nv + Cp * Pw


def adabin_conv_export(p_bits, exp: AdaBinExport) -> torch.Tensor:
    """Convenience: popcount conv with an :class:`AdaBinExport`'s bits and coefficients."""
    return adabin_conv_popcount(p_bits, exp.q, exp.A, exp.B, exp.Cn, exp.Cp, exp.stride,
                                exp.padding)
