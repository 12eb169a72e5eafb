# amaranth: UnusedElaboratable=no
"""A whole (small) encoder layer on StaCore in amaranth.sim: compiler + RTL vs golden layer.

A random MiniLM-shaped layer (d=32, 2 heads of 16, FFN 64) quantized like MiniLM, on a 4×4×4
2:4 array; 6 tokens (a partial token tile). Exercises every destination, both post-ops,
on-chip attention with the streaming softmax, LayerNorm and REQUANT, segments and the
cycle model. The MiniLM-size layer runs on Verilator in tests/sim/test_sta_layer_rtl.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nmaccel.model.encoder_int import calibrate_layer, prune_layer_weights, quantize_layer
from nmaccel.model.minilm import LayerWeights, MiniLMConfig
from nmaccel.model.quant import quantize_activation
from nmaccel.model.sta_cycles import program_cycles
from nmaccel.model.sta_layer import compile_layer
from nmaccel.sim.sta_amaranth import run_amaranth_programs
from nmaccel.spec import sta_isa
from nmaccel.spec.config import StaConfig

MC = MiniLMConfig(d_model=32, heads=2, d_ff=64, layers=1)


def small_cfg(**kw) -> StaConfig:
    base = dict(rows=4, cols=4, lanes=4, n=2, m=4, softmax_lanes=4, max_seq=16,
                wbuf_depth=512, abuf_depth=256, obuf_depth=64, pbuf_depth=256, cbuf_depth=32,
                vbuf_depth=128)
    base.update(kw)
    return StaConfig(**base)


def random_layer(cfg, nm, seed=0, tokens=6):
    g = torch.Generator().manual_seed(seed)

    def w(o, i):
        return torch.randn(o, i, generator=g) / i ** 0.5

    def b(o):
        return torch.randn(o, generator=g) * 0.1
    d, f = MC.d_model, MC.d_ff
    lw = LayerWeights(w(d, d), b(d), w(d, d), b(d), w(d, d), b(d), w(d, d), b(d),
                      1 + 0.1 * torch.randn(d, generator=g), b(d), w(f, d), b(f), w(d, f), b(d),
                      1 + 0.1 * torch.randn(d, generator=g), b(d))
    lw = prune_layer_weights(lw, nm)
    xs = [torch.randn(12, d, generator=g) for _ in range(3)]
    layer = quantize_layer(lw, calibrate_layer(lw, xs, MC), MC, cfg, nm)
    x = quantize_activation(torch.randn(tokens, d, generator=g), layer.in_scale, cfg.vec_bits)
    return layer, x


@pytest.mark.parametrize("nm", [(2, 4), None], ids=["2:4", "dense"])
def test_small_layer_bit_exact_and_cycles(nm):
    cfg = small_cfg()
    layer, x = random_layer(cfg, nm)
    lp = compile_layer(layer, x, cfg)
    res = run_amaranth_programs(lp.segments, idle=0.2, backpressure=0.3, seed=1)
    np.testing.assert_array_equal(res[-1].outputs["out"], lp.expected)
    for seg, r in zip(lp.segments, res):
        assert r.cycles == program_cycles(cfg, seg.commands).total
        assert r.per_command == program_cycles(cfg, seg.commands).per_command
    assert sum(r.counters["SOFTMAX_BUSY"] for r in res) > 0
    assert sum(r.counters["VECTOR_CYCLES"] for r in res) > 0


def test_compiler_errors_are_clear():
    cfg = small_cfg()
    layer, x = random_layer(cfg, (2, 4))
    with pytest.raises(ValueError,
                       match="sequence length 17 exceeds the configured maximum max_seq=16"):
        compile_layer(layer, np.zeros((17, MC.d_model), np.int64), cfg)
    with pytest.raises(ValueError, match="head dim 16 does not fit this array"):
        compile_layer(layer, x, small_cfg(rows=32, cols=32, lanes=16, softmax_lanes=32))
    with pytest.raises(ValueError, match="square array"):
        compile_layer(layer, x, small_cfg(cols=2, softmax_lanes=2))


def test_hardware_flags_bad_softmax_block():
    """A softmax GEMM whose row is longer than max_seq stops with the 'seq' status."""
    from nmaccel.model.sta_program import StaProgram
    from nmaccel.sim.sta_amaranth import run_amaranth
    cfg = small_cfg()
    p = StaProgram(cfg)
    p.commands.append(sta_isa.encode_command(cfg, op=1, mode=1, m_tiles=1, n_tiles=8, k_steps=1,
                                             dest=sta_isa.Dest.SOFTMAX, length=cfg.max_seq + 1,
                                             wsrc=1, a_stride=1))
    res = run_amaranth(p, raise_on_error=False)
    assert sta_isa.decode_status(res.status).error and res.error_code == sta_isa.ERROR_CODES["seq"]
    with pytest.raises(ValueError, match="softmax row length must be in"):
        sta_isa.GemmCommand(mode=1, m_tiles=1, n_tiles=8, k_steps=1, wsrc=1, a_stride=1,
                            dest=sta_isa.Dest.SOFTMAX, length=cfg.max_seq + 1).check(cfg)


def test_layernorm_params_must_fit_the_pbuf_field():
    cfg = small_cfg(requant_mult_bits=8)
    with pytest.raises(ValueError, match=r"ln_gamma_bits=16\) must fit the PBUF mult field"):
        sta_isa.encode_ln_params(cfg, 1, 0)
    with pytest.raises(ValueError, match=r"gamma must be in \[-32768, 32767\]"):
        sta_isa.encode_ln_params(small_cfg(), 1 << 15, 0)
