"""``nmaccel verilog sta`` / ``nmaccel sim sta``: output and one-line errors."""

import pytest

from nmaccel.cli import main


def test_verilog_sta_writes_the_core(tmp_path, capsys):
    out = tmp_path / "sta.v"
    assert main(["verilog", "sta", "--preset", "tiny", "--rows", "1", "-o", str(out)]) == 0
    text = out.read_text()
    assert "module sta_core(" in text and "wr__payload" in text and "rd_data__valid" in text
    assert "1x2 PEs" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["verilog", "sta", "--preset", "nope"], "unknown STA preset 'nope'"),
    (["verilog", "sta", "--preset", "tiny", "--lanes", "3"], "lanes must be a multiple of n (2)"),
    (["verilog", "sta", "--rows", "0"], "expected a positive integer, not 0"),
    (["sim", "sta", "--nm", "4:4"], "n must satisfy 1 <= n < m"),
    (["sim", "sta", "--gemms-only", "--heads", "13", "--seq", "8"],
     "heads must be in [0, 12], not 13"),
    (["sim", "sta", "--gemms-only", "--preset", "tiny", "--seq", "65"],
     "seq=65 exceeds the config's max_seq=64"),
    (["sim", "sta", "--preset", "tiny", "--seq", "65"],
     "sequence length 65 exceeds the configured maximum max_seq=64"),
    (["sim", "sta", "--layers", "0,7"], "MiniLM-L6 layers are 0..5, not [7]"),
    (["sim", "sta", "--layers", "x"], "--layers must be 'all' or a comma list of integers"),
    (["sim", "sta", "--layer", "0", "--layers", "all"], "give either --layer or --layers"),
    (["sim", "sta", "--cols", "4", "--seq", "8"], "on-chip attention needs a square array"),
    (["sim", "sta", "--nm", "2:8", "--weights", "shipped"],
     "--weights shipped: no distilled student ships for 2:8 (shipped: 2:4, 1:4)"),
    (["sim", "sta", "--nm", "dense", "--weights", "shipped"],
     "no distilled student ships for dense"),
    (["sim", "sta", "--weights", "best"], "invalid choice: 'best'"),
    (["sim", "sta", "--sdram-mhz", "200"], "sdram_mhz: IS42S16160G-7 runs at most 143 MHz, "
                                           "not 200 MHz"),
    (["verilog", "sta", "--sdram-mhz", "0"], "expected a positive integer, not 0"),
])
def test_bad_arguments(argv, message, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_config_says_where_a_preset_runs(capsys):
    """The JSON stays parseable on stdout; stderr says whether a board build exists (from the
    measured builds shipped in boards/measured), "simulation only" for a preset that fits no
    device; the help lists every preset's status."""
    import json

    from nmaccel.spec.config import StaConfig
    assert main(["config", "--preset", "ulx3s_board"]) == 0
    out, err = capsys.readouterr()
    assert StaConfig.from_json(out) == StaConfig.from_json(json.dumps(json.loads(out)))
    assert "ulx3s_board: simulation only: does not fit the ULX3S 85F" in err
    assert main(["config", "--preset", "ulx3s_lite"]) == 0
    assert "ulx3s_lite: board build: ULX3S 85F" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["config", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "large: simulation only" in help_text and "ulx3s_lite: board build" in help_text
