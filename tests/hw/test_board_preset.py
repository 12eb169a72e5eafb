"""The board-sized ``ulx3s_board`` preset still runs a MiniLM-L6 layer (compiler + cycle model).

Its buffers are 1/8–1/16 of ``ulx3s``'s (sized for the ECP5-85F's block RAM), so the compiler
splits the weights into more segments and must fit a layer's activations into 1024 ABUF words
(the FFN half reuses the attention half's words). The RTL of the same array is exercised by the
``ulx3s`` tests; only the buffer depths differ.
"""

import pytest

from nmaccel.model.pipeline import QuantizedMiniLM
from nmaccel.model.sta_cycles import program_cycles
from nmaccel.model.sta_layer import compile_layer
from nmaccel.model.sta_workloads import minilm_tokens
from nmaccel.spec.config import sta_preset


def _layer0(cfg, nm, seq):
    if nm:
        cfg = cfg.replace(n=nm[0], m=nm[1])
    qm = QuantizedMiniLM(cfg, nm, num_layers=1)
    return cfg, qm.layers[0], qm.quantize_input(minilm_tokens(seq))


@pytest.mark.parametrize("nm", [None, (2, 4)], ids=["dense", "2:4"])
def test_board_preset_compiles_minilm_layer(nm):
    board, big = sta_preset("ulx3s_board"), sta_preset("ulx3s")
    for name in ("rows", "cols", "lanes", "softmax_lanes", "vec_bits"):
        assert getattr(board, name) == getattr(big, name), name      # same array, smaller buffers
    cyc = {}
    for key, cfg in (("board", board), ("big", big)):
        cfg, layer, x = _layer0(cfg, nm, 32)
        lp = compile_layer(layer, x, cfg)
        cyc[key] = (len(lp.segments), sum(program_cycles(cfg, p.commands).total
                                          for p in lp.segments))
    assert cyc["board"][0] > cyc["big"][0]
    # more segments cost a few drains and weight-chunk commands, not more MAC cycles
    assert 1.0 < cyc["board"][1] / cyc["big"][1] < 1.02, cyc


def test_board_preset_refuses_a_layer_that_does_not_fit():
    cfg, layer, x = _layer0(sta_preset("ulx3s_board"), None, 40)
    with pytest.raises(ValueError, match="sequence length 40 needs more than abuf_depth=1024 "
                                         "ABUF words"):
        compile_layer(layer, x, cfg)
