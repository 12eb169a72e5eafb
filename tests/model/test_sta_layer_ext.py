"""The layer compiler with weights in external memory: fills in alternating WBUF/PBUF halves,
the FETCH order that makes each fill complete before its commands and overwrites a half only
after its GEMMs drained, one contiguous SDRAM image per layer at the base asked for, and every
GEMM reading exactly the weights the host-loaded compile gives it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from nmaccel.model.minilm_sparse import resolve_weights
from nmaccel.model.pipeline import QuantizedMiniLM
from nmaccel.model.sta_layer import compile_layer
from nmaccel.model.sta_workloads import minilm_tokens
from nmaccel.spec import sta_isa
from nmaccel.spec.config import sta_preset
from nmaccel.spec.sta_isa import FetchCommand, GemmCommand, WSrc


def _unpack(cfg, space, words):
    per = sta_isa.ext_words_per_entry(cfg, space)
    w = cfg.sdram_timing.data_bits
    return [sum(int(words[i * per + k]) << (k * w) for k in range(per))
            for i in range(len(words) // per)]


@pytest.fixture(scope="module")
def layer_and_input():
    cfg = sta_preset("ulx3s_board")
    weights, _ = resolve_weights((2, 4), "magnitude")
    qm = QuantizedMiniLM(cfg, (2, 4), weights=weights, num_layers=1)
    return qm.layers[0], qm.quantize_input(minilm_tokens(16))


def test_fills_fetch_order_and_image(layer_and_input):
    layer, x = layer_and_input
    cfg = replace(sta_preset("ulx3s_board"), sdram_mhz=100)
    lp = compile_layer(layer, x, cfg, ext_base=777)
    assert np.array_equal(lp.expected, layer.forward(x))
    cmds = [c for seg in lp.segments for c in (sta_isa.command_from_word(cfg, w)
                                               for w in seg.commands)]
    assert all(len(seg.commands) <= cfg.cbuf_depth for seg in lp.segments)
    image = lp.segments[0].ext_image
    assert all(not seg.ext_image for seg in lp.segments[1:])
    assert sorted(image) == list(range(777, lp.ext_end))
    half = {"WBUF": cfg.wbuf_depth // 2, "PBUF": cfg.pbuf_depth // 2}
    fetches = [(i, c) for i, c in enumerate(cmds) if isinstance(c, FetchCommand)]
    real = [c for _, c in fetches if c.wlen or c.plen]
    # FETCH f0, FETCH f1 first; each fill in the half i % 2, at consecutive SDRAM places
    assert isinstance(cmds[0], FetchCommand) and isinstance(cmds[1], FetchCommand)
    addr = 777
    for i, f in enumerate(real):
        assert f.w_base == (i % 2) * half["WBUF"] and f.p_base == (i % 2) * half["PBUF"]
        assert f.barrier == (i >= 2) and f.ext_addr == addr
        f.check(cfg)
        addr += f.ext_words(cfg)
    assert addr == lp.ext_end
    # the last FETCH is one of nothing, before the last fill's commands; one per fill and it
    assert len(fetches) == len(real) + 1
    last_i, last = fetches[-1]
    assert (last.wlen, last.plen) == (0, 0) and last_i < len(cmds) - 1
    # emulate the buffers: each linear GEMM finds its rows' weights where it reads them,
    # the same entries the host-loaded compile (no SDRAM) gives it
    host = compile_layer(layer, x, sta_preset("ulx3s_board"))
    want = []
    for seg in host.segments:
        for word in seg.commands:
            c = sta_isa.command_from_word(host.cfg, word)
            if isinstance(c, GemmCommand) and c.wsrc == WSrc.WBUF:
                n = c.m_tiles * c.k_steps
                want += [seg.images["WBUF"][c.w_base + k] for k in range(n)]
    wbuf, got = {}, []
    for c in cmds:
        if isinstance(c, FetchCommand) and c.wlen:
            words = [image[a] for a in range(c.ext_addr, c.ext_addr
                                             + c.wlen * sta_isa.ext_words_per_entry(cfg, "WBUF"))]
            wbuf.update(zip(range(c.w_base, c.w_base + c.wlen), _unpack(cfg, "WBUF", words)))
        elif isinstance(c, GemmCommand) and c.wsrc == WSrc.WBUF:
            got += [wbuf[c.w_base + k] for k in range(c.m_tiles * c.k_steps)]
    assert got == want


def test_a_command_that_fits_no_half_is_refused(layer_and_input):
    layer, x = layer_and_input
    cfg = replace(sta_preset("ulx3s_board"), sdram_mhz=100, pbuf_depth=256)
    with pytest.raises(ValueError, match="ln1 alone does not fit half of WBUF/PBUF"):
        compile_layer(layer, x, cfg)
