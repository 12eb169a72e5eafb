# amaranth: UnusedElaboratable=no
"""WeightFetch behind the SDRAM controller, against the checking SDRAM model (cocotb,
Verilator and Icarus): random entries of a WBUF-wide buffer arrive bit-exact at their
places, with no SDRAM timing violation, in the cycles the fetch model predicts (within 1% on
long requests); bad parameters fail first."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from amaranth.hdl import Module
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out, connect, flipped

from nmaccel.hw.common.sdram import SdramController, pins_signature
from nmaccel.hw.sta.fetch import WeightFetch, fetch_layout
from nmaccel.model.sdram_cycles import stream_read_cycles
from nmaccel.sim.fetch_bench import TOP
from nmaccel.sim.simulators import activate, require_simulator, run_module
from nmaccel.spec.sdram import IS42S16160G_7, pack_entries, words_per_entry


class FetchTop(wiring.Component):
    """Controller + engine + a ``depth`` x ``entry_bits`` buffer with a read port."""

    def __init__(self, timing, entry_bits: int, depth: int):
        self.timing, self.entry_bits, self.depth = timing, entry_bits, depth
        self.addr_bits = (depth - 1).bit_length()
        self.targets = {"BUF": (entry_bits, self.addr_bits)}
        super().__init__({
            "pins": Out(pins_signature(timing)), "ready": Out(1),
            "req": In(stream.Signature(fetch_layout(timing, self.targets, depth))),
            "busy": Out(1), "rd_addr": In(self.addr_bits), "rd_data": Out(entry_bits)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.ctrl = ctrl = SdramController(self.timing)
        m.submodules.fetch = fetch = WeightFetch(self.timing, self.targets, self.depth)
        m.submodules.buf = buf = memory.Memory(shape=self.entry_bits, depth=self.depth,
                                               init=[])
        connect(m, fetch.mem, ctrl.cmd)
        connect(m, ctrl.rdata, fetch.mem_rdata)
        connect(m, flipped(self.pins), ctrl.pins)
        connect(m, flipped(self.req), fetch.req)
        wp, rp = buf.write_port(), buf.read_port()
        wr = fetch.buf_wr
        m.d.comb += [wp.addr.eq(wr.payload.addr), wp.data.eq(wr.payload.data),
                     wp.en.eq(wr.valid), rp.addr.eq(self.rd_addr),
                     self.rd_data.eq(rp.data), self.busy.eq(fetch.busy),
                     self.ready.eq(ctrl.ready)]
        return m


def build(timing, entry_bits: int, depth: int, simulator: str) -> Path:
    from amaranth.back import verilog

    from nmaccel.sim.build_cache import cached_verilog, simulation_build
    text = cached_verilog("fetch", ["nmaccel.hw.common.sdram", "nmaccel.hw.sta.fetch"],
                          json.dumps([timing.to_dict(), entry_bits, depth, TOP]),
                          lambda: verilog.convert(FetchTop(timing, entry_bits, depth),
                                                  name=TOP))
    return simulation_build("fetch", text, TOP, simulator)[0]


@pytest.mark.parametrize("simulator,entry_bits", [("verilator", 320), ("icarus", 320),
                                                  ("verilator", 50), ("verilator", 16)])
def test_entries_arrive_exact_in_the_predicted_cycles(simulator, entry_bits, tmp_path):
    sim = activate(require_simulator(simulator))
    timing = IS42S16160G_7.at(100).replace(init_wait=2000)   # a shorter power-up: faster
    depth = 1024
    rng = random.Random(entry_bits)
    entries = [rng.getrandbits(entry_bits) for _ in range(depth)]
    image = pack_entries(timing, entry_bits, entries)
    wpe = words_per_entry(timing, entry_bits)
    # (first entry in the image, buffer base, entries): a whole-row start, an odd place
    # across a row end, one entry, the most the buffer holds
    big = 600 if simulator == "verilator" else 120
    requests = [(0, 0, 40), (37, 300, 29), (5, 1000, 1), (depth - big, 0, big)]
    job = {"timing": timing.to_dict(), "entry_bits": entry_bits, "addr_bits": 10,
           "image": [hex(w) for w in image],
           "requests": [[first * wpe, base, n] for first, base, n in requests]}
    (tmp_path / "job.json").write_text(json.dumps(job))
    result = tmp_path / "result.json"
    run_module(sim.name, TOP, "nmaccel.sim.fetch_bench",
               build(timing, entry_bits, depth, sim.name), tmp_path,
               {"NMACCEL_FETCH_JOB": str(tmp_path / "job.json"),
                "NMACCEL_FETCH_RESULT": str(result)}, "fetch bench", result=result)
    res = json.loads(result.read_text())
    assert res["violations"] == []
    for (first, _base, count), got in zip(requests, res["results"]):
        assert [int(h, 16) for h in got["entries"]] == entries[first:first + count]
        words = count * wpe
        model = stream_read_cycles(timing, words, start_col=(first * wpe) % 512) + 2
        tol = 0.01 * got["cycles"] if words >= 4096 else 0.02 * got["cycles"] + 12
        assert abs(got["cycles"] - model) <= tol, (count, got["cycles"], model)


def test_bad_parameters_are_refused():
    t = IS42S16160G_7.at(100)
    with pytest.raises(ValueError, match="entry_bits must be a positive integer, not 0"):
        WeightFetch(t, {"WBUF": (0, 10)}, 16)
    with pytest.raises(ValueError, match="max_entries must be a positive integer, not 0"):
        WeightFetch(t, {"WBUF": (8, 10)}, 0)
    with pytest.raises(ValueError, match="targets must be a non-empty dict"):
        WeightFetch(t, {}, 16)
    with pytest.raises(ValueError, match="does not fit 8 bits"):
        pack_entries(t, 8, [256])
    assert pack_entries(t, 20, [0x12345]) == [0x2345, 0x1]
