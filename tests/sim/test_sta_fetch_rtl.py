"""Weights from the SDRAM on the STA RTL (Verilator): FETCH commands, the core's SDRAM
controller and weight-fetch engine, against the checking SDRAM model.

Random GEMM programs whose weights and parameters come from the SDRAM give the golden results,
with no SDRAM timing violation, and the cycle model predicts the runs within 1%; FETCH's range
errors stop the run with their codes; a whole MiniLM-L6 layer (2:4, double-buffered fills)
is bit-exact, with the fetch counters within 1% of the model.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from nmaccel.model.sta_cycles import program_cycles
from nmaccel.model.sta_program import StaProgram
from nmaccel.sim.simulators import require_simulator
from nmaccel.spec import sta_isa
from nmaccel.spec.sdram import pack_entries
from nmaccel.spec.sta_isa import FetchCommand

sys.path.insert(0, str(Path(__file__).parent))
from test_sta_rtl import make_cfg, random_program  # noqa: E402  (shared scenario builders)


def ext_cfg():
    return replace(make_cfg("R4C4L4-2:4"), sdram_mhz=100)


def via_sdram(program: StaProgram, ext_addr: int = 1000) -> StaProgram:
    """``program`` with its WBUF and PBUF images moved into the SDRAM and fetched by the
    program itself: one FETCH of both blocks (from entry 0 to the highest used), a FETCH of
    nothing that waits for it, then the program's commands."""
    cfg = program.cfg
    t = cfg.sdram_timing
    out = StaProgram(cfg)
    out.images = {s: dict(e) for s, e in program.images.items() if s not in ("WBUF", "PBUF")}
    blocks = {}
    for space in sta_isa.FETCH_SPACES:
        image = program.images.get(space, {})
        top = max(image) + 1 if image else 0
        blocks[space] = [image.get(i, 0) for i in range(top)]
    words = pack_entries(t, sta_isa.space_width(cfg, "WBUF"), blocks["WBUF"]) \
        + pack_entries(t, sta_isa.space_width(cfg, "PBUF"), blocks["PBUF"])
    out.ext_image = dict(zip(range(ext_addr, ext_addr + len(words)), words))
    fetch = FetchCommand(ext_addr=ext_addr, wlen=len(blocks["WBUF"]), plen=len(blocks["PBUF"]))
    out.commands = [fetch.check(cfg).encode(cfg), FetchCommand(ext_addr=0).encode(cfg),
                    *program.commands]
    out.outputs, out.expected = program.outputs, program.expected
    return out


@pytest.mark.parametrize("backdoor", [True, False], ids=["backdoor", "host-writes"])
def test_random_gemms_fetch_their_weights_from_the_sdram(backdoor):
    """``backdoor``: the SDRAM image goes straight into the model; else the host writes it
    through the host port (CSR EXT_ADDR, EXT_DATA) after STATUS.ext_ready."""
    require_simulator("verilator")
    from nmaccel.sim.sta_rtl import run_programs
    cfg = ext_cfg()
    programs = [via_sdram(random_program(cfg, seed), ext_addr=a)
                for seed, a in ((11, 0), (12, 5000), (13, 511))]
    # range errors: WBUF, PBUF, the SDRAM's end; the core keeps working after them
    top = 1 << cfg.sdram_timing.addr_bits
    bad = [FetchCommand(ext_addr=0, w_base=cfg.wbuf_depth - 2, wlen=3),
           FetchCommand(ext_addr=0, p_base=cfg.pbuf_depth - 1, plen=2),
           FetchCommand(ext_addr=top - 3, wlen=1)]
    errors = []
    for f in bad:
        p = StaProgram(cfg)
        p.commands.append(f.encode(cfg))
        errors.append(p)
        with pytest.raises(ValueError, match="FETCH"):
            f.check(cfg)                   # the host-side check refuses each of them too
    results = run_programs(programs + errors, raise_on_error=False, backdoor=backdoor)
    codes = sta_isa.ERROR_CODES
    assert [r.error_code for r in results] == [0, 0, 0, codes["wbuf"], codes["pbuf"],
                                               codes["ext"]]
    for program, res in zip(programs, results):
        for name, want in program.expected.items():
            assert np.array_equal(res.outputs[name], want), name
        model = program_cycles(cfg, program.commands)
        words = program.commands and sta_isa.command_from_word(cfg, program.commands[0]) \
            .ext_words(cfg)
        assert res.counters["FETCH_BUSY"] > words          # at most one word per cycle
        assert abs(res.counters["FETCH_BUSY"] - model.fetch_busy) <= 0.01 * model.fetch_busy + 12
        assert abs(res.counters["CYCLES"] - model.total) <= 0.01 * model.total + 12
        # the GEMMs after the fetch take exactly the cycles the model says
        assert res.per_command[2:] == model.per_command[2:]
        assert res.extra["sdram_commands"]["READ"] >= words


def test_minilm_layer_with_weights_from_the_sdram():
    """MiniLM-L6 layer 0, 2:4, 32 tokens, on the board array (8x8x4, WBUF 1024) with the
    ULX3S SDRAM at 100 MHz: every weight and parameter comes from the SDRAM through
    double-buffered fills; bit-exact, cycles within 1% of the model."""
    require_simulator("verilator")
    from nmaccel.sim.sta_encoder import run_encoder
    from nmaccel.spec.config import sta_preset
    cfg = replace(sta_preset("ulx3s_board"), sdram_mhz=100)
    res = run_encoder(cfg, (2, 4), [0], seq=32, progress=False)
    (run,) = res["runs"]
    assert run["bit_exact"]
    c = run["cycles"]
    assert abs(c["model_error"]) <= 0.01, c
    assert abs(c["fetch_busy"] - c["predicted_fetch_busy"]) <= 0.01 * c["fetch_busy"], c
    assert abs(c["fetch_wait"] - c["predicted_fetch_wait"]) <= 0.01 * c["fetch_busy"], c
    # 2:4 weights (5 bits each) and the parameters: ~1.1 MB; this layer is bandwidth-bound
    assert 1.0e6 < c["fetch_bytes"] < 1.3e6, c
    assert c["fetch_wait"] > c["compute"] > 0, c
    assert c["fetch_cmd"] > 0 and c["linear_gemm"] > 0


def test_the_host_driver_puts_the_weights_in_the_sdram_over_the_uart():
    """The board path: the host driver writes the SDRAM image through the UART bridge (after
    STATUS.ext_ready), the program fetches it; bit-exact, no SDRAM timing violation."""
    require_simulator("verilator")
    from test_sta_core import random_spec

    from nmaccel.boards.simulated import run_over_uart
    from nmaccel.model.sta_program import compile_gemm
    cfg = ext_cfg()
    rng = np.random.default_rng(4)
    spec = random_spec(rng, cfg, sta_isa.Mode.SPARSE, 5, 6, 16, 0, "y")
    program = via_sdram(compile_gemm(spec, cfg), ext_addr=12345)
    res = run_over_uart(program, divisor=8)
    assert res.check(program) == {"y": True}
    assert res.counters["FETCH_BUSY"] > 0
