"""SdramController's generated Verilog under cocotb 2.x against the checking SDRAM model
(:mod:`nmaccel.sim.sdram_model`, bench :mod:`nmaccel.sim.sdram_bench`): random traffic with
idle and back-pressure is read back exactly with no timing violation, through the power-up
wait and many refresh intervals, on both chips of the ULX3S; a controller built with one
timing shorter than the chip's (or a refresh interval too long, a power-up wait too short)
makes the model fail with that rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nmaccel.model.sdram_cycles import stream_read_cycles
from nmaccel.sim.sdram_bench import TOP
from nmaccel.sim.simulators import activate, require_simulator, run_module
from nmaccel.spec.sdram import IS42S16160G_7, MT48LC16M16A2_6A, SdramTiming


def build(timing: SdramTiming, simulator: str) -> Path:
    """The controller for ``timing`` in the build cache; returns the runner's build folder."""
    from amaranth.back import verilog

    from nmaccel.hw.common.sdram import SdramController
    from nmaccel.sim.build_cache import cached_verilog, simulation_build
    text = cached_verilog("sdram", ["nmaccel.hw.common.sdram"],
                          json.dumps(timing.to_dict(), sort_keys=True) + f"|{TOP}",
                          lambda: verilog.convert(SdramController(timing), name=TOP))
    return simulation_build("sdram", text, TOP, simulator)[0]


def run_bench(controller: SdramTiming, chip: SdramTiming, simulator: str, tmp_path,
              requests: int = 1500, seed: int = 1, streams=(512,)) -> dict:
    sim = activate(require_simulator(simulator))
    result = tmp_path / "result.json"
    run_module(sim.name, TOP, "nmaccel.sim.sdram_bench", build(controller, sim.name), tmp_path,
               {"NMACCEL_SDRAM_CHIP": json.dumps(chip.to_dict()),
                "NMACCEL_SDRAM_SEED": str(seed), "NMACCEL_SDRAM_REQUESTS": str(requests),
                "NMACCEL_SDRAM_STREAMS": ",".join(map(str, streams)),
                "NMACCEL_SDRAM_RESULT": str(result)}, "SDRAM bench", result=result)
    return json.loads(result.read_text())


@pytest.mark.parametrize("simulator,chip,mhz", [
    ("verilator", IS42S16160G_7, 100), ("icarus", IS42S16160G_7, 100),
    ("verilator", IS42S16160G_7, 143), ("verilator", MT48LC16M16A2_6A, 125)])
def test_controller_is_exact_and_keeps_every_timing(simulator, chip, mhz, tmp_path):
    timing = chip.at(mhz)
    streams = (512, 4096, 20000) if simulator == "verilator" else (512,)
    res = run_bench(timing, timing, simulator, tmp_path, seed=mhz, streams=streams)
    assert res["violations"] == []
    assert res["mismatch_count"] == 0 and res["checked"] > 300
    assert res["ready_cycle"] > timing.init_wait
    after = res["cycles"] - res["ready_cycle"]
    assert after > 4 * timing.t_refi
    assert res["refreshes"] >= timing.init_refreshes + after // timing.t_refi
    assert res["commands"]["PRECHARGE"] > 10 and res["commands"]["ACTIVE"] > 10
    # sequential words from a row start: about one word per cycle, and the fetch cycle
    # model within 1% (2% for one row, where one refresh more or less is 2%)
    for s in res["streams"]:
        model = stream_read_cycles(timing, s["words"])
        assert abs(model - s["cycles"]) <= (0.02 if s["words"] <= 512 else 0.01) * s["cycles"], \
            (s, model)


@pytest.mark.parametrize("change,rule", [
    ({"t_rcd": 1}, "tRCD"), ({"t_rp": 1}, "tRP"), ({"t_ras": 2}, "tRAS"),
    ({"t_rfc": 3}, "tRFC"), ({"t_wr": 1}, "tWR"), ({"init_wait": 50}, "power-up"),
    ({"t_refi": 1600}, "tREFI"), ({"cas_latency": 3}, "CL")])
def test_a_controller_with_a_shorter_timing_fails_the_model(change, rule, tmp_path):
    """The model is strict: one timing of the controller below the chip's is caught."""
    chip = IS42S16160G_7.at(100)
    if change == {"cas_latency": 3}:      # CL 3 is legal; claim the chip needs 3 at CL 2
        controller, chip = chip.replace(cas_latency=2), chip.replace(cas_latency=3)
    else:
        controller = chip.replace(**change)
    res = run_bench(controller, chip.replace(init_wait=chip.init_wait), "verilator", tmp_path,
                    requests=600)
    rules = {v.split(": ")[1] for v in res["violations"]}
    assert rule in rules, res["violations"][:5]
