"""``nmaccel demo``: table and plot from (synthetic) results, and one-line errors for bad
input. The RTL run itself (a few minutes) is exercised by ``nmaccel demo``, not here."""

import pytest

from nmaccel.cli import main
from nmaccel.studies.demo import format_rtl_table, plot_demo


def fake_demo(fmax=None):
    def row(engine, kind, cycles, exact=True, acc=None, int8=None):
        us = cycles / fmax if fmax else None
        return {"workload": "w", "engine": engine, "kind": kind, "bit_exact": exact,
                "cycles": cycles, "predicted": cycles, "utilization": 0.61, "fmax_mhz": fmax,
                "projected_us": us, "torch_fp32_us": 1500.0, "torch_int8_us": int8,
                "accuracy": acc}
    rows = [row("STA ulx3s 2:4", "sta", 200000, int8=700.0),
            row("STA ulx3s dense", "sta", 390000, int8=700.0),
            row("conv adder", "conv", 161950, acc=0.98),
            row("conv binary", "conv", 161950, False, 0.96)]
    rows[0]["speedup_vs_dense"] = 1.95
    return {"preset": "ulx3s", "nm": "2:4", "layer": 0, "seq": 32, "images": 50,
            "board": "ulx3s", "rows": rows}


def test_table_without_fmax_says_not_measured():
    text = format_rtl_table(fake_demo())
    lines = text.splitlines()
    assert len(lines) == 2 + 4
    assert "fmax not measured" in lines[2] and "yes" in lines[2]
    assert " NO " in lines[5] and "96.0%" in lines[5]


def test_table_with_fmax_projects_time(tmp_path):
    res = fake_demo(fmax=100.0)
    text = format_rtl_table(res)
    assert "2.00 ms" in text          # 200000 cycles at 100 MHz
    assert "0.75x" in text            # 1500 µs / 2000 µs
    plot_demo(res, tmp_path / "demo.png")
    assert (tmp_path / "demo.png").stat().st_size > 1000
    plot_demo(fake_demo(), tmp_path / "nofmax.png")
    assert (tmp_path / "nofmax.png").stat().st_size > 1000


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    out = " ".join(out.split())    # argparse wraps long help lines
    assert "(default: ulx3s_board)" in out and "(default: 2:4)" in out and "(default: 50)" in out


@pytest.mark.parametrize("argv, message", [
    (["demo", "--preset", "huge"],
     "unknown STA preset 'huge'; expected one of: tiny, ulx3s, large, ulx3s_board, ulx3s_lite"),
    (["demo", "--nm", "4:4"], "n must satisfy 1 <= n < m (m=4), not 4"),
    (["demo", "--nm", "2:5"], "m must be a power of two"),
    (["demo", "--board", "nexys"], "unknown board 'nexys'; expected one of"),
    (["demo", "--jobs", "0"], "--jobs must be a positive integer, not 0"),
    (["demo", "--images", "-3"], "--images must be in 0..360, not -3"),
    (["demo", "--seq", "0"], "expected a positive integer, not 0"),
])
def test_bad_arguments_give_one_line_errors(argv, message, usage_error):
    assert message in usage_error(argv)


def test_shipped_weights_need_a_shipped_pattern(capsys):
    assert main(["demo", "--nm", "1:8", "--weights", "shipped", "--png", ""]) == 2
    assert "--weights shipped: no distilled student ships for 1:8" in capsys.readouterr().err


def test_dense_alone_is_refused(capsys):
    assert main(["demo", "--nm", "dense", "--png", ""]) == 2
    assert "--nm must be an N:M pattern" in capsys.readouterr().err


def test_demo_projects_the_layer_with_weights_from_sdram():
    """The demo's SDRAM line: both patterns, the sparse one with fewer bytes and less time;
    a layer the half buffers cannot hold says so instead."""
    from nmaccel.studies.demo import format_sdram_line, sdram_projection
    proj = sdram_projection("ulx3s_board", (2, 4), 16)
    sparse, dense = proj["rows"]
    assert (sparse["pattern"], dense["pattern"]) == ("2:4", "dense int8")
    assert sparse["bytes"] < 0.7 * dense["bytes"]
    assert sparse["latency_cycles"] < dense["latency_cycles"]
    line = format_sdram_line({"sdram": proj})
    assert "IS42S16160G-7 SDRAM at 100 MHz" in line and "2:4 " in line and "MB" in line
    bad = sdram_projection("ulx3s_board", None, 128)
    assert "error" in bad and "abuf_depth" in bad["error"]
    assert "not projected" in format_sdram_line({"sdram": bad})
