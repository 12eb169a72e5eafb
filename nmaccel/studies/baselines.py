"""Software baselines measured on this machine: PyTorch CPU time for the work the RTL does.

:func:`minilm_layer_baseline` times one MiniLM-L6 encoder layer (the real weights of layer
``index``, post-LN BERT layer: Q/K/V/O projections, 12-head attention, FFN with GELU, two
LayerNorms) on one sequence of ``seq`` tokens, in PyTorch fp32 and with PyTorch dynamic int8
quantization (``torch.ao.quantization.quantize_dynamic`` on the six Linear layers: int8
weights, activations quantized per call). :func:`conv_net_baseline` times the float digits
conv net (:class:`~nmaccel.model.conv_nets.DigitsConvNet`) on a batch of images.

Timing: ``warmup`` untimed calls, then ``repeats`` timed calls under ``torch.inference_mode``;
the median is reported (with min and max). The thread count is recorded: by default PyTorch
uses every core of the machine.
"""

from __future__ import annotations

import math
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Optional

__all__ = ["time_call", "torch_encoder_layer", "minilm_layer_baseline", "conv_net_baseline",
           "machine"]


def machine() -> dict:
    """What the baselines ran on (CPU model, cores, torch version and threads)."""
    import os

    import torch
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version()}


def time_call(fn: Callable[[], object], repeats: int = 50, warmup: int = 5) -> dict:
    """Median/min/max wall seconds of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    if repeats < 1:
        raise ValueError(f"repeats must be a positive integer, not {repeats}")
    if warmup < 0:
        raise ValueError(f"warmup must be a non-negative integer, not {warmup}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "repeats": repeats}


def _torch_layer_class():
    import torch
    from torch import nn

    class TorchEncoderLayer(nn.Module):
        """One post-LN BERT encoder layer built from ``nn.Linear``/``nn.LayerNorm`` (so that
        dynamic quantization can replace the Linear layers); input (S, d)."""

        def __init__(self, lw, cfg):
            super().__init__()
            self.heads, self.head_dim = cfg.heads, cfg.head_dim
            self.q, self.k, self.v, self.o = (nn.Linear(cfg.d_model, cfg.d_model)
                                              for _ in range(4))
            self.ffn1 = nn.Linear(cfg.d_model, cfg.d_ff)
            self.ffn2 = nn.Linear(cfg.d_ff, cfg.d_model)
            self.ln1 = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps)
            self.ln2 = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps)
            with torch.no_grad():
                for name, (w, b) in lw.linears().items():
                    getattr(self, name).weight.copy_(w)
                    getattr(self, name).bias.copy_(b)
                for ln, g, b in ((self.ln1, lw.ln1_g, lw.ln1_b), (self.ln2, lw.ln2_g, lw.ln2_b)):
                    ln.weight.copy_(g)
                    ln.bias.copy_(b)

        def forward(self, x):
            s, d = x.shape
            q = self.q(x).view(s, self.heads, self.head_dim).transpose(0, 1)
            k = self.k(x).view(s, self.heads, self.head_dim).transpose(0, 1)
            v = self.v(x).view(s, self.heads, self.head_dim).transpose(0, 1)
            p = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(self.head_dim), dim=-1)
            ctx = (p @ v).transpose(0, 1).reshape(s, d)
            h = self.ln1(x + self.o(ctx))
            return self.ln2(h + self.ffn2(nn.functional.gelu(self.ffn1(h))))

    return TorchEncoderLayer


def torch_encoder_layer(lw, cfg):
    """A ``TorchEncoderLayer`` (``nn.Module``) holding MiniLM layer weights ``lw``."""
    return _torch_layer_class()(lw, cfg)


def minilm_layer_baseline(seq: int = 32, index: int = 0, repeats: int = 50, warmup: int = 5,
                          threads: Optional[int] = None) -> dict:
    """PyTorch CPU fp32 and dynamic-int8 time of MiniLM-L6 layer ``index`` on ``seq`` tokens.

    The fp32 module is checked against :func:`nmaccel.model.minilm.encoder_layer_float`
    (max abs difference recorded). ``threads`` sets ``torch.set_num_threads`` for the
    measurement (default: leave PyTorch's default, all cores)."""
    import torch

    from nmaccel.model.minilm import (
        MiniLMConfig,
        embed_tokens,
        encoder_layer_float,
        get_default_weights,
    )
    from nmaccel.model.sta_workloads import minilm_tokens
    n_layers = MiniLMConfig().layers
    if not 0 <= index < n_layers:
        raise ValueError(f"index must be a MiniLM-L6 layer in 0..{n_layers - 1}, not {index}")
    if seq < 1:
        raise ValueError(f"seq must be a positive integer, not {seq}")
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        weights = get_default_weights()
        cfg = weights.config
        with torch.inference_mode():
            ids = torch.as_tensor(minilm_tokens(seq))
            x = embed_tokens(weights, ids)
            for i in range(index):
                x = encoder_layer_float(weights.layers[i], x, cfg)
            x = x.float().contiguous()
            layer = torch_encoder_layer(weights.layers[index], cfg).eval()
            ref = encoder_layer_float(weights.layers[index], x, cfg)
            fp32_err = float((layer(x) - ref).abs().max())
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from torch.ao.quantization import quantize_dynamic
                qlayer = quantize_dynamic(layer, {torch.nn.Linear}, dtype=torch.qint8)
                int8_err = float((qlayer(x) - ref).abs().max())
                fp32 = time_call(lambda: layer(x), repeats, warmup)
                int8 = time_call(lambda: qlayer(x), repeats, warmup)
        d, f, h = cfg.d_model, cfg.d_ff, cfg.heads
        macs = seq * (4 * d * d + 2 * d * f) + 2 * seq * seq * d
        return {"workload": f"MiniLM-L6 layer {index}, seq {seq}", "seq": len(ids),
                "layer": index, "macs": macs, "heads": h,
                "fp32": dict(fp32, max_abs_error_vs_golden_float=fp32_err),
                "int8_dynamic": dict(int8, max_abs_error_vs_golden_float=int8_err),
                "machine": machine()}
    finally:
        torch.set_num_threads(old_threads)


def conv_net_baseline(net: str, images: int = 50, seed: int = 0, repeats: int = 20,
                      warmup: int = 3, threads: Optional[int] = None) -> dict:
    """PyTorch CPU fp32 time of the trained digits ``net`` ("adder" or "binary") on a batch
    of ``images`` test images (the images ``nmaccel sim conv --images K --seed S`` draws)."""
    import numpy as np
    import torch

    from nmaccel.model.conv_nets import PIXEL_MAX, load_trained
    from nmaccel.model.digits import load_digits_split
    from nmaccel.sim.conv_digits import select_images

    if net not in ("adder", "binary"):
        raise ValueError(f"net must be 'adder' or 'binary', not {net!r}")
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        model = load_trained(net).eval()
        split = load_digits_split()
        x = torch.from_numpy(np.asarray(split.test_images[select_images(images, seed)],
                                        dtype=np.float32) / PIXEL_MAX).unsqueeze(1)
        with torch.inference_mode():
            t = time_call(lambda: model(x), repeats, warmup)
        return {"workload": f"digits {net} net, {images} images", "net": net, "images": images,
                "fp32": t, "per_image_s": t["median_s"] / images, "machine": machine()}
    finally:
        torch.set_num_threads(old_threads)
