"""A tiny BERT-style Transformer classifier for scikit-learn's 8×8 digits, and its integer golden
model.

Model (:class:`DigitsTransformer`)
    Each of the 8 pixel rows is a token: ``Linear(8 → d)`` of the row's pixels (0..16 scaled
    to [0, 1]) + a learned position embedding + LayerNorm (BERT's embedding LayerNorm), then
    ``layers`` post-LN encoder layers with exactly MiniLM's op sequence — Q/K/V linears,
    per-head softmax attention scaled by ``1/sqrt(head_dim)``, output linear, residual +
    LayerNorm, FFN ``Linear → GELU(erf) → Linear``, residual + LayerNorm — then mean pooling
    over the 8 tokens and a ``Linear(d → 10)`` classifier. Defaults fit the STA: d_model 32 and
    FFN 64 (multiples of 16), 2 heads of 16, 8 tokens. Each layer converts to a
    :class:`nmaccel.model.minilm.LayerWeights` (:meth:`EncoderLayer.layer_weights`) and
    :func:`nmaccel.model.minilm.encoder_layer_float` computes the same function (tested).

Pruning
    Only the encoder layers' six linears are N:M pruned (:meth:`DigitsTransformer.prunable_linears`,
    what :func:`nmaccel.model.idp.prune_nm` picks up); the token embedding (8 inputs, run on
    the host) and the 10-way classifier stay dense, as is usual for first/last layers.

Integer golden model (:func:`digits_int_program` → :class:`DigitsIntProgram`)
    Host: float token embedding + LayerNorm → ``vec_bits`` (int16) codes. STA: every encoder
    layer as a :class:`nmaccel.model.encoder_int.IntEncoderLayer` (int8 GEMM operands, N:M
    weights compressed, integer softmax/LayerNorm/GELU), quantized by
    :func:`~nmaccel.model.encoder_int.quantize_layer` after calibration on training images.
    Integer head: sum of the 8 int16 token vectors → requant (1/8 and the scale change folded
    into one multiplier) to int8 → dense int8 GEMM with int32 bias → requant to int16 logits
    at one common scale → argmax. The RTL step replaces the golden ``IntEncoderLayer.forward``
    with the RTL run through ``DigitsIntProgram.predict(images, layer_runner=...)``.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nmaccel.model.digits import load_digits_split
from nmaccel.model.encoder_int import (
    IntEncoderLayer,
    QLinear,
    calibrate_layer,
    mse_range,
    quantize_layer,
)
from nmaccel.model.minilm import LayerWeights, MiniLMConfig, encoder_layer_float
from nmaccel.model.nm import _is_int
from nmaccel.model.quant import (
    activation_scale,
    quantize_activation,
    quantize_multiplier,
    requant,
)
from nmaccel.spec.config import StaConfig

__all__ = ["TOKENS", "CLASSES", "EncoderLayer", "DigitsTransformer", "DigitsData", "digits_data",
           "classification_loss", "predict",
           "train_dense", "accuracy", "DigitsIntProgram", "digits_int_program"]

#: Tokens per image (pixel rows) and pixels per token.
TOKENS = 8
CLASSES = 10
#: BERT/MiniLM LayerNorm epsilon (the integer LayerNorm drops it: below one LSB).
LN_EPS = 1e-12


def _check_pos_int(value, name: str) -> int:
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return int(value)


class EncoderLayer(nn.Module):
    """One post-LN BERT encoder layer on a batch ``(B, S, d)``; MiniLM's op order."""

    def __init__(self, d_model: int, heads: int, d_ff: int):
        super().__init__()
        self.heads = heads
        self.head_dim = d_model // heads
        self.q, self.k, self.v, self.o = (nn.Linear(d_model, d_model) for _ in range(4))
        self.ffn1 = nn.Linear(d_model, d_ff)
        self.ffn2 = nn.Linear(d_ff, d_model)
        self.ln1 = nn.LayerNorm(d_model, eps=LN_EPS)
        self.ln2 = nn.LayerNorm(d_model, eps=LN_EPS)

    def forward(self, x: torch.Tensor, key_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``x`` ``(B, S, d)``; ``key_mask`` ``(B, S)`` bool marks real tokens (padding is
        never attended to; its outputs are meaningless). No mask: every token is real."""
        b, s, d = x.shape
        h, hd = self.heads, self.head_dim

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, s, h, hd).transpose(1, 2)              # (B, H, S, hd)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(hd)
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        ctx = (probs @ v).transpose(1, 2).reshape(b, s, d)
        r1 = self.ln1(x + self.o(ctx))
        return self.ln2(r1 + self.ffn2(F.gelu(self.ffn1(r1))))     # F.gelu: exact erf form

    @classmethod
    def from_layer_weights(cls, lw: LayerWeights, heads: int, eps: float = LN_EPS
                           ) -> EncoderLayer:
        """A trainable copy of a MiniLM :class:`LayerWeights` layer."""
        d_ff, d_model = lw.w1.shape
        layer = cls(d_model, heads, d_ff)
        layer.ln1.eps = layer.ln2.eps = eps
        with torch.no_grad():
            for lin, (w, b) in zip(layer.linears().values(), lw.linears().values(), strict=True):
                lin.weight.copy_(w)
                lin.bias.copy_(b)
            for ln, g, b in ((layer.ln1, lw.ln1_g, lw.ln1_b), (layer.ln2, lw.ln2_g, lw.ln2_b)):
                ln.weight.copy_(g)
                ln.bias.copy_(b)
        return layer

    def linears(self) -> dict[str, nn.Linear]:
        """The six linears under :data:`nmaccel.model.encoder_int.LINEAR_NAMES`."""
        return {"q": self.q, "k": self.k, "v": self.v, "o": self.o, "ffn1": self.ffn1,
                "ffn2": self.ffn2}

    def layer_weights(self) -> LayerWeights:
        """This layer as MiniLM's :class:`LayerWeights` (detached float32 copies)."""
        def t(p: torch.Tensor) -> torch.Tensor:
            return p.detach().clone().float()
        return LayerWeights(wq=t(self.q.weight), bq=t(self.q.bias), wk=t(self.k.weight),
                            bk=t(self.k.bias), wv=t(self.v.weight), bv=t(self.v.bias),
                            wo=t(self.o.weight), bo=t(self.o.bias), ln1_g=t(self.ln1.weight),
                            ln1_b=t(self.ln1.bias), w1=t(self.ffn1.weight), b1=t(self.ffn1.bias),
                            w2=t(self.ffn2.weight), b2=t(self.ffn2.bias),
                            ln2_g=t(self.ln2.weight), ln2_b=t(self.ln2.bias))


class DigitsTransformer(nn.Module):
    """Rows-as-tokens Transformer classifier for 8×8 digits (see the module docstring).

    Input: images ``(B, 8, 8)`` or ``(B, 1, 8, 8)`` with pixels already scaled to [0, 1].
    """

    def __init__(self, d_model: int = 32, heads: int = 2, d_ff: int = 64, layers: int = 1):
        super().__init__()
        d_model, heads = _check_pos_int(d_model, "d_model"), _check_pos_int(heads, "heads")
        d_ff, layers = _check_pos_int(d_ff, "d_ff"), _check_pos_int(layers, "layers")
        if d_model % heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by heads ({heads})")
        self.config = MiniLMConfig(d_model=d_model, heads=heads, d_ff=d_ff, layers=layers,
                                   vocab=1, max_pos=TOKENS, type_vocab=1, ln_eps=LN_EPS)
        self.embed = nn.Linear(TOKENS, d_model)
        self.pos = nn.Parameter(torch.randn(TOKENS, d_model) * 0.02)
        self.emb_ln = nn.LayerNorm(d_model, eps=LN_EPS)
        self.layers = nn.ModuleList(EncoderLayer(d_model, heads, d_ff) for _ in range(layers))
        self.head = nn.Linear(d_model, CLASSES)

    @staticmethod
    def _rows(images: torch.Tensor) -> torch.Tensor:
        if images.dim() == 4 and images.shape[1] == 1:
            images = images[:, 0]
        if images.dim() != 3 or tuple(images.shape[1:]) != (TOKENS, TOKENS):
            raise ValueError(f"images must be (B, 8, 8) or (B, 1, 8, 8), not {tuple(images.shape)}")
        return images.float()

    def embed_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Host-side embedding: ``(B, 8, 8)`` images → ``(B, 8, d)`` layer-0 input."""
        return self.emb_ln(self.embed(self._rows(images)) + self.pos)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        h = self.embed_tokens(images)
        for layer in self.layers:
            h = layer(h)
        return h

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, 10)``."""
        return self.head(self.encode(images).mean(dim=1))

    def prunable_linears(self) -> dict[str, nn.Linear]:
        """The encoder linears, named ``"<layer>.<q|k|v|o|ffn1|ffn2>"``."""
        return {f"{i}.{name}": lin for i, layer in enumerate(self.layers)
                for name, lin in layer.linears().items()}


# -- data and training -------------------------------------------------------------------------


@dataclass(frozen=True)
class DigitsData:
    """The fixed digits split as tensors; images ``(N, 8, 8)`` in [0, 1]."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def sampler(self, batch_size: int = 64) -> Callable[[torch.Generator], tuple]:
        """``sample_batch(gen)`` drawing ``batch_size`` training images with replacement."""
        batch_size = _check_pos_int(batch_size, "batch_size")
        count = self.x_train.shape[0]

        def sample(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
            idx = torch.randint(count, (batch_size,), generator=gen)
            return self.x_train[idx], self.y_train[idx]
        return sample


def digits_data(split_seed: int = 0) -> DigitsData:
    """:func:`nmaccel.model.digits.load_digits_split` as :class:`DigitsData`."""
    with warnings.catch_warnings():     # digits.py hands read-only arrays to torch.from_numpy
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        x_tr, y_tr, x_te, y_te = load_digits_split(split_seed).tensors()
    return DigitsData(x_tr[:, 0].contiguous(), y_tr, x_te[:, 0].contiguous(), y_te)


def classification_loss(model: nn.Module, batch: tuple) -> torch.Tensor:
    """Cross entropy of ``model`` on ``(images, labels)`` (the ``loss_fn`` of :func:`prune_nm`)."""
    x, y = batch
    return F.cross_entropy(model(x), y)


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    model.eval()
    return model(images).argmax(dim=1)


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of ``images`` classified correctly (float model)."""
    return float((predict(model, images) == labels).double().mean())


def train_dense(data: DigitsData, seed: int = 0, steps: int = 3000, batch_size: int = 64,
                lr: float = 3e-3, weight_decay: float = 1e-2, model_kwargs: Optional[dict] = None,
                progress: Optional[Callable[[], None]] = None) -> DigitsTransformer:
    """Train a dense :class:`DigitsTransformer` from a seeded init for ``steps`` AdamW steps."""
    from nmaccel.model.idp import train_steps
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
    torch.manual_seed(seed)
    model = DigitsTransformer(**(model_kwargs or {}))
    gen = torch.Generator().manual_seed(seed)
    train_steps(model, steps, classification_loss, data.sampler(batch_size), gen, lr=lr,
                weight_decay=weight_decay,
                on_step=None if progress is None else (lambda _loss: progress()))
    return model


# -- integer golden model ----------------------------------------------------------------------


LayerRunner = Callable[[int, IntEncoderLayer, np.ndarray], np.ndarray]


@dataclass
class DigitsIntProgram:
    """The digits Transformer as integer layers: what the STA runs plus the host's parts.

    ``layers[i]`` is the :class:`IntEncoderLayer` (golden model of one STA layer program;
    its ``linears`` hold the N:M compressed int8 weights). The host embeds an image in float and
    quantizes it to ``vec_bits`` at ``in_scale`` (:meth:`encoder_input`); after the last layer
    :meth:`classify` pools and runs the integer head.
    """

    cfg: StaConfig
    model_cfg: MiniLMConfig
    nm: Optional[tuple[int, int]]
    embed: Callable[[torch.Tensor], torch.Tensor] = field(repr=False)
    layers: list[IntEncoderLayer] = field(repr=False)
    pool_mult: int = 0
    pool_shift: int = 0
    head: Optional[QLinear] = field(default=None, repr=False)
    scales: dict = field(default_factory=dict)

    @property
    def in_scale(self) -> float:
        return self.layers[0].in_scale

    def encoder_input(self, image: np.ndarray | torch.Tensor) -> np.ndarray:
        """One image ``(8, 8)`` (pixels in [0, 1]) → layer-0 input, int ``(8, d)`` in
        ``vec_bits``."""
        img = torch.as_tensor(image, dtype=torch.float32)
        if tuple(img.shape) != (TOKENS, TOKENS):
            raise ValueError(f"image must be (8, 8), not {tuple(img.shape)}")
        with torch.no_grad():
            x = self.embed(img[None])[0]
        return quantize_activation(x, self.in_scale, self.cfg.vec_bits)

    def classify(self, out: np.ndarray) -> tuple[int, np.ndarray]:
        """Last layer's int16 output ``(8, d)`` → ``(label, int16 logits)`` by the integer head."""
        out = np.asarray(out, dtype=np.int64)
        pooled = requant(out.sum(axis=0, keepdims=True), self.pool_mult, self.pool_shift,
                         self.cfg.act_bits, mult_bits=self.cfg.requant_mult_bits)
        logits = self.head(pooled, self.cfg)[0]
        return int(np.argmax(logits)), logits

    def run_image(self, image, layer_runner: Optional[LayerRunner] = None
                  ) -> tuple[int, np.ndarray]:
        """Classify one image; ``layer_runner(i, layer, x)`` replaces ``layer.forward(x)``
        (e.g. an RTL run of layer ``i``), default the golden model."""
        x = self.encoder_input(image)
        for i, layer in enumerate(self.layers):
            x = layer.forward(x) if layer_runner is None else layer_runner(i, layer, x)
        return self.classify(x)

    def predict(self, images, layer_runner: Optional[LayerRunner] = None,
                progress: Optional[Callable[[], None]] = None) -> np.ndarray:
        """Integer predictions for ``images`` ``(N, 8, 8)`` (pixels in [0, 1])."""
        preds = []
        for img in images:
            preds.append(self.run_image(img, layer_runner)[0])
            if progress is not None:
                progress()
        return np.array(preds, dtype=np.int64)

    def macs(self) -> dict[str, int]:
        """Multiplications per image on the STA (encoder layers, sparse-aware)."""
        total: dict[str, int] = {}
        for layer in self.layers:
            for key, val in layer.macs(TOKENS).items():
                total[key] = total.get(key, 0) + val
        return total


def digits_int_program(model: DigitsTransformer, cfg: StaConfig,
                       nm: Optional[tuple[int, int]] = None,
                       calib_images: Optional[torch.Tensor] = None,
                       calib_count: int = 256) -> DigitsIntProgram:
    """Quantize a (pruned) :class:`DigitsTransformer` into a :class:`DigitsIntProgram`.

    ``nm``: the pattern the encoder weights already satisfy (e.g. after
    :func:`nmaccel.model.idp.prune_nm`); their int8 forms are stored compressed and the golden
    GEMMs run from the compressed form. A weight that is not N:M raises ``ValueError``.
    ``calib_images``: images for range calibration (default: the first ``calib_count`` training
    images of the fixed split — never the test images).

    This is the entry point for running the digits Transformer on the STA RTL: compile
    ``program.layers[i]`` to an STA layer program, and pass an RTL runner to
    ``program.predict(images, layer_runner=...)``; predictions must equal
    ``program.predict(images)``.
    """
    if not isinstance(model, DigitsTransformer):
        raise ValueError(f"model must be a DigitsTransformer, not {type(model).__name__}")
    if not isinstance(cfg, StaConfig):
        raise ValueError(f"cfg must be a StaConfig, not {type(cfg).__name__}")
    if TOKENS > cfg.max_seq:
        raise ValueError(f"cfg.max_seq ({cfg.max_seq}) must be at least {TOKENS} tokens")
    mc = model.config
    if calib_images is None:
        calib_images = digits_data().x_train[:_check_pos_int(calib_count, "calib_count")]
    model.eval()
    ab, vb, mb = cfg.act_bits, cfg.vec_bits, cfg.requant_mult_bits
    with torch.no_grad():
        xs = list(model.embed_tokens(torch.as_tensor(calib_images)))
        layers: list[IntEncoderLayer] = []
        in_scale = None
        for layer in model.layers:
            lw = layer.layer_weights()
            stats = calibrate_layer(lw, xs, mc, bits=ab)
            int_layer = quantize_layer(lw, stats, mc, cfg, nm, in_scale)
            layers.append(int_layer)
            in_scale = int_layer.out_scale
            xs = [encoder_layer_float(lw, x, mc) for x in xs]
        pooled = torch.stack([x.mean(dim=0) for x in xs])
        logits = model.head(pooled)
    s_out = layers[-1].out_scale
    s_pool = activation_scale(mse_range(pooled, ab), ab)
    s_logit = activation_scale(float(logits.abs().max()) * 1.25, vb)
    pool_mult, pool_shift = quantize_multiplier(s_out / TOKENS / s_pool, mb)
    head = QLinear.build(model.head.weight.detach(), model.head.bias.detach(), s_pool, s_logit, vb,
                         cfg)
    # frozen: later edits of model don't leak in
    embed = copy.deepcopy(model).eval().embed_tokens
    return DigitsIntProgram(cfg=cfg, model_cfg=mc, nm=nm, embed=embed, layers=layers,
                            pool_mult=pool_mult, pool_shift=pool_shift, head=head,
                            scales={"in": layers[0].in_scale, "out": s_out, "pool": s_pool,
                                    "logits": s_logit})
