"""``nmaccel verilog conv`` writes the engine's Verilog; ``nmaccel sim conv`` refuses bad
arguments with one-line errors (exit status 2)."""

from __future__ import annotations

import json

import pytest

from nmaccel.sim.cli import main


def test_verilog_conv_writes_engine(tmp_path, capsys):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"kind": "conv", "p_out": 2, "p_in": 2, "max_width": 4,
                               "max_height": 4, "max_in_channels": 4, "max_out_channels": 4}))
    out = tmp_path / "conv.v"
    assert main(["verilog", "conv", "--config", str(cfg), "-o", str(out)]) == 0
    text = out.read_text()
    assert "module conv_top" in text
    for port in ("i__valid", "i__ready", "i__payload", "o__valid", "o__ready", "o__payload",
                 "cyc_total", "wmem_data", "pmem_data", "layer"):
        assert port in text


@pytest.mark.parametrize("argv,match", [
    (["sim", "conv", "--net", "resnet"], "invalid choice: 'resnet'"),
    (["sim", "conv", "--net", "adder", "--images", "361"], r"images must be in \[1, 360\]"),
    (["sim", "conv", "--net", "adder", "--seed", "-1"], "seed must be >= 0"),
    (["sim", "conv", "--net", "adder", "--bits", "5"], "invalid choice: 5"),
    (["sim", "conv", "--net", "adder", "--stall", "1.5"], r"must be in \[0, 1\)"),
    (["verilog", "conv", "--preset", "huge"], "unknown conv preset 'huge'"),
])
def test_bad_arguments(argv, match, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    import re
    assert re.search(match, capsys.readouterr().err)


def test_bad_config_file(tmp_path, capsys):
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps({"kind": "conv", "p_out": 0}))
    assert main(["verilog", "conv", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "p_out must be a positive integer, not 0" in err[0]
