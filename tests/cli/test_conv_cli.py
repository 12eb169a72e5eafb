"""``nmaccel verilog conv`` writes the engine's Verilog; ``nmaccel sim conv`` refuses bad
arguments with one-line errors (exit status 2)."""

from __future__ import annotations

import json

import pytest

from nmaccel.cli import main


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
    (["sim", "conv", "--net", "adder", "--seed", "-1"], "expected a non-negative integer, not -1"),
    (["sim", "conv", "--net", "adder", "--bits", "5"], "invalid choice: 5"),
    (["sim", "conv", "--net", "adder", "--stall", "1.5"], r"must be in \[0, 1\)"),
    (["verilog", "conv", "--preset", "huge"], "unknown conv preset 'huge'"),
])
def test_bad_arguments(argv, match, usage_error):
    import re
    assert re.search(match, usage_error(argv))


def test_bad_config_file(tmp_path, capsys):
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps({"kind": "conv", "p_out": 0}))
    assert main(["verilog", "conv", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "p_out must be a positive integer, not 0" in err[0]


def test_harness_refuses_bad_input_before_simulating():
    import numpy as np

    from nmaccel.hw.conv.engine import ConvEngine
    from nmaccel.model.conv_ref import random_job
    from nmaccel.sim.conv_harness import run_jobs, run_net
    from nmaccel.spec.config import ConvConfig
    cfg = ConvConfig(p_out=2, p_in=2, max_width=8, max_height=8, max_in_channels=4,
                     max_out_channels=4)
    job, x = random_job(np.random.default_rng(0), "adder", 4, 3, 1, 3, 2, 4, 4)
    with pytest.raises(ValueError, match=r"activation tensor must have shape \(C_in, H, W\)"):
        run_jobs(cfg, [(job, x[:2])])                        # channel count mismatch
    big, xb = random_job(np.random.default_rng(0), "adder", 4, 3, 1, 6, 2, 4, 4)
    with pytest.raises(ValueError, match="C_in of layer 'adder' must be <= 4"):
        run_jobs(cfg, [(big, xb)])
    with pytest.raises(ValueError, match=r"images must have shape \(N, 8, 8\)"):
        run_net(cfg, None, np.zeros((1, 8, 9)))
    with pytest.raises(TypeError, match="config must be a ConvConfig, not StaConfig"):
        from nmaccel.spec.config import StaConfig
        ConvEngine(StaConfig())
