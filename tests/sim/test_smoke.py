"""End-to-end smoke test of the Amaranth -> Verilog -> cocotb flow on every simulator.

A tiny registered adder is converted with ``amaranth.back.verilog`` and driven by
``smoke_bench.py`` through ``cocotb_tools.runner``. Missing simulators skip the test
(with the reason from :mod:`nmaccel.sim.simulators`); a failing cocotb test fails it.
"""

from pathlib import Path

import pytest
from amaranth.back import verilog
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from nmaccel.sim.simulators import ICARUS_BUILD_ARGS, activate, require_simulator

BENCH_DIR = Path(__file__).resolve().parent


class SmokeAdder(wiring.Component):
    a: In(8)
    b: In(8)
    o: Out(9)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.o.eq(self.a + self.b)
        return m


@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
def test_smoke_adder(simulator, tmp_path):
    sim = activate(require_simulator(simulator))
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    source = tmp_path / "smoke_top.v"
    source.write_text(verilog.convert(SmokeAdder(), name="smoke_top"))

    runner = get_runner(sim.name)
    if sim.name == "verilator":
        extra = {"build_args": ["-Wno-fatal"]}
    else:
        extra = {"timescale": ("1ns", "1ps"), "build_args": list(ICARUS_BUILD_ARGS)}
    runner.build(sources=[source], hdl_toplevel="smoke_top",
                 build_dir=tmp_path / f"build_{sim.name}", always=True, **extra)
    results_xml = runner.test(hdl_toplevel="smoke_top", test_module="smoke_bench",
                              test_dir=BENCH_DIR,
                              results_xml=str(tmp_path / "results.xml"))
    num_tests, num_failed = get_results(Path(results_xml))
    assert num_tests == 1, f"expected 1 cocotb test, {num_tests} ran ({results_xml})"
    assert num_failed == 0, f"{num_failed} cocotb test(s) failed ({results_xml})"


def test_failed_build_quotes_the_log(tmp_path):
    """A simulator build that fails raises one RuntimeError naming the log and quoting its
    tail (the compiler's output goes to the log, not the terminal)."""
    activate(require_simulator("verilator"))
    from cocotb_tools.runner import get_runner

    from nmaccel.sim.simulators import build_logged
    source = tmp_path / "broken_top.v"
    source.write_text("module broken_top(input clk);\n  this is not verilog\nendmodule\n")
    log = tmp_path / "build.log"
    with pytest.raises(RuntimeError, match=r"simulation build failed .*; log .*build\.log:\n"
                                           r"(.|\n)*broken_top\.v"):
        build_logged(get_runner("verilator"), log, sources=[source], hdl_toplevel="broken_top",
                     build_dir=tmp_path / "sim", always=True)
    assert log.read_text()
