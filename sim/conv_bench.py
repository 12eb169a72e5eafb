"""cocotb bench of the conv engine (``conv_top``), driven by :mod:`nmaccel.sim.conv_harness`.

The harness pickles a request to ``$NMACCEL_CONV_REQUEST``; this bench runs it on the RTL
and pickles the answer to ``$NMACCEL_CONV_RESULT``:

``{"kind": "jobs", "jobs": [(job, x), ...]}``
    independent layers -> ``[(beats, counters), ...]`` (raw output beats);
``{"kind": "net", "jobs": [...], "inputs": [...], "images": array}``
    a whole net, layer by layer over all images (each layer's weights loaded once), the
    input of layer l+1 being the RTL's own output of layer l ->
    ``{"logits": (N, C) v of the last layer, "counters": [[per layer] per image]}``.

Inputs idle with probability ``gaps`` and the output drops ``ready`` with probability
``stall`` (random back-pressure), both drawn from ``seed``.
"""

from __future__ import annotations

import os
import pickle
import random

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from nmaccel.spec.config import ConvConfig
from nmaccel.model.conv_ref import (layer_input, pack_inputs, pack_params, pack_settings,
                                    pack_weights, unpack_outputs)
from nmaccel.sim.cocotb_streams import reset, start_clock, stream_get, stream_put, write_words

COUNTERS = ("cyc_total", "cyc_active", "cyc_load", "cyc_stall")


async def load_layer(dut, cfg, job):
    await write_words(dut.clk, dut.wmem_en, dut.wmem_addr, dut.wmem_data,
                      pack_weights(job, cfg))
    await write_words(dut.clk, dut.pmem_en, dut.pmem_addr, dut.pmem_data,
                      pack_params(job, cfg))
    dut.layer.value = pack_settings(job, cfg)


async def run_layer(dut, cfg, job, x, rng, gaps, stall):
    """One layer on already loaded weights: returns (output beats, counters)."""
    dut.start.value = 1
    await RisingEdge(dut.clk)
    dut.start.value = 0
    done = []

    def finished():
        if int(dut.done.value):
            done.append(1)
        return bool(done)

    put = cocotb.start_soon(stream_put(dut, "i", pack_inputs(job, cfg, x), dut.clk, rng, gaps))
    beats = await stream_get(dut, "o", dut.clk, rng=rng, stall=stall, stop=finished)
    await put
    await ReadOnly()
    counters = {n: int(getattr(dut, n).value) for n in COUNTERS}
    await RisingEdge(dut.clk)
    return beats, counters


@cocotb.test()
async def conv_request(dut):
    with open(os.environ["NMACCEL_CONV_REQUEST"], "rb") as f:
        req = pickle.load(f)
    cfg = ConvConfig.from_dict(req["config"])
    rng = random.Random(req.get("seed", 0))
    gaps, stall = req.get("gaps", 0.0), req.get("stall", 0.0)
    start_clock(dut.clk)
    dut.start.value = 0
    dut.wmem_en.value = 0
    dut.pmem_en.value = 0
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    await reset(dut, dut.clk)
    if req["kind"] == "jobs":
        out = []
        for job, x in req["jobs"]:
            await load_layer(dut, cfg, job)
            out.append(await run_layer(dut, cfg, job, x, rng, gaps, stall))
    else:
        acts = [img.astype(np.int64)[None] for img in req["images"]]
        counters = [[] for _ in acts]
        logits = None
        for job, how in zip(req["jobs"], req["inputs"]):
            await load_layer(dut, cfg, job)
            nxt, vs = [], []
            for n, x in enumerate(acts):
                x = layer_input(job, x, how)
                beats, cnt = await run_layer(dut, cfg, job, x, rng, gaps, stall)
                v, q = unpack_outputs(job, cfg, beats)
                nxt.append(q)
                vs.append(v.reshape(-1))
                counters[n].append(cnt)
            acts = nxt
            logits = np.stack(vs)
        out = {"logits": logits, "counters": counters}
    with open(os.environ["NMACCEL_CONV_RESULT"], "wb") as f:
        pickle.dump(out, f)
