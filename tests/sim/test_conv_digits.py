"""Both digits nets end to end through the ConvEngine RTL (Verilator, 4×2 PEs) on a
random subset of 20 test images: RTL logits identical to the integer golden model and
measured cycles per image equal to the prediction (the full 360-image runs are
``nmaccel sim conv --images 360``, results in reports/conv_digits_*.json)."""

from __future__ import annotations

import pytest

from nmaccel.sim.simulators import activate, require_simulator
from nmaccel.spec.config import ConvConfig, conv_preset

# the "4x2" engine of test_conv_engine.py (shared Verilator build)
CFG = ConvConfig(p_out=4, p_in=2, max_width=8, max_height=8, max_in_channels=128,
                 max_out_channels=32, out_fifo_depth=4)


@pytest.mark.parametrize("net", ["adder", "binary"])
def test_digits_net_through_rtl(net):
    activate(require_simulator("verilator"))
    from nmaccel.sim.conv_digits import simulate_net
    res = simulate_net(net, CFG, images=20, seed=1, progress=False)
    assert res["verdict"] == "PASS" and res["logits_identical"]
    assert res["predictions_identical"]
    assert res["accuracy"]["rtl"] == res["accuracy"]["golden"]
    cyc = res["cycles_per_image"]
    assert cyc["error"] <= 0.02
    assert cyc["measured_min"] == cyc["measured_max"] == cyc["predicted"]
    assert 0 < res["pe_utilization"] <= 1
    assert len(res["image_indices"]) == 20 == len(set(res["image_indices"]))


@pytest.mark.parametrize("net", ["adder", "binary"])
def test_digits_net_on_the_icebreaker_preset(net):
    """The iCEBreaker's engine (``icebreaker``: one post-processing lane shared by the two
    output lanes, weights in the SPRAM model, products in logic): logits identical to the
    golden model, every image's cycles equal to the model (with its post-processing waits)."""
    activate(require_simulator("verilator"))
    from nmaccel.model.conv_nets import build_workload
    from nmaccel.model.conv_ref import get_exp_cycles
    from nmaccel.sim.conv_digits import simulate_net
    cfg = conv_preset("icebreaker")
    res = simulate_net(net, cfg, images=6, seed=3, progress=False)
    assert res["verdict"] == "PASS" and res["logits_identical"]
    cyc = res["cycles_per_image"]
    assert cyc["measured_min"] == cyc["measured_max"] == cyc["predicted"]
    jobs = build_workload(net, bits=4).qnet.jobs
    for layer, job in zip(res["layers"], jobs):
        assert layer["measured_max"] == layer["predicted"] == get_exp_cycles(job, cfg)["total"]


def test_sim_conv_command_writes_json(tmp_path, capsys):
    activate(require_simulator("verilator"))
    import json

    from nmaccel.cli import main
    cfg = tmp_path / "engine.json"
    cfg.write_text(CFG.to_json())
    out = tmp_path / "out.json"
    rc = main(["sim", "conv", "--net", "binary", "--images", "3", "--seed", "5",
               "--im2col-first", "--config", str(cfg), "--json", str(out), "--stall", "0.3",
               "--gaps", "0.2"])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["verdict"] == "PASS" and res["images"] == 3 and res["seed"] == 5
    assert res["im2col_first"] and res["layers"][0]["name"] == "conv1/im2col"
    assert set(res["accuracy"]) == {"rtl", "golden", "float"}
    # with back-pressure the measured cycles may only exceed the prediction
    assert res["cycles_per_image"]["measured_min"] >= res["cycles_per_image"]["predicted"]
    assert "RTL vs golden logits: PASS" in capsys.readouterr().out
