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

Every layer run has a cycle limit: ``max_cycles`` from the request if given, else
:func:`layer_limit` (a multiple of the cycle model's prediction, stretched for the gaps and
stalls, plus a margin). A layer that has not raised ``done`` by then fails the test with a
:class:`~nmaccel.sim.cocotb_streams.BenchTimeout` naming the layer, the beats moved so far and
the limit (the harness raises it with the log tail).
"""

from __future__ import annotations

import os
import pickle
import random

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from nmaccel.model.conv_ref import (
    get_exp_cycles,
    layer_input,
    pack_inputs,
    pack_params,
    pack_settings,
    pack_weights,
    unpack_outputs,
)
from nmaccel.sim.cocotb_streams import bit, reset, start_clock, stream_get, stream_put, write_words
from nmaccel.spec.config import ConvConfig

COUNTERS = ("cyc_total", "cyc_active", "cyc_load", "cyc_stall")

#: Default layer limit: ``WATCHDOG_FACTOR`` times the predicted cycles (stretched by
#: ``1 / (1 - max(gaps, stall))``) plus ``WATCHDOG_MARGIN``.
WATCHDOG_FACTOR = 4
WATCHDOG_MARGIN = 1000


def layer_limit(job, cfg, gaps: float = 0.0, stall: float = 0.0) -> int:
    """Cycles a layer may take from ``start`` to ``done`` before the bench gives up.

    Parameters
    ----------
    job, cfg
        The layer (:class:`~nmaccel.model.conv_ref.ConvLayerJob`) and the engine's
        :class:`~nmaccel.spec.config.ConvConfig`.
    gaps, stall
        The bench's input idle and output back-pressure probabilities.

    Returns
    -------
    int
        The :func:`~nmaccel.model.conv_ref.get_exp_cycles` total (always-valid input,
        always-ready output) divided by the fraction of cycles the bench lets beats move
        (``1 - max(gaps, stall)``), times :data:`WATCHDOG_FACTOR`, plus
        :data:`WATCHDOG_MARGIN`.
    """
    slow = 1.0 / max(1.0 - max(gaps, stall), 0.01)
    return int(WATCHDOG_FACTOR * get_exp_cycles(job, cfg)["total"] * slow) + WATCHDOG_MARGIN


async def load_layer(dut, cfg, job):
    await write_words(dut.clk, dut.wmem_en, dut.wmem_addr, dut.wmem_data,
                      pack_weights(job, cfg))
    await write_words(dut.clk, dut.pmem_en, dut.pmem_addr, dut.pmem_data,
                      pack_params(job, cfg))
    dut.layer.value = pack_settings(job, cfg)


async def run_layer(dut, cfg, job, x, rng, gaps, stall, max_cycles=None):
    """Run one layer on already loaded weights.

    Parameters
    ----------
    dut, cfg, job, x
        The engine, its config, the layer and its input.
    rng, gaps, stall
        Random input idle cycles (``gaps``) and output back-pressure (``stall``).
    max_cycles
        Cycles from ``start`` to ``done`` (default :func:`layer_limit`).

    Returns
    -------
    tuple
        ``(output beats, counters)``.

    Raises
    ------
    BenchTimeout
        The input was not all taken, or ``done`` did not come, within ``max_cycles``.
    """
    if max_cycles is None:
        max_cycles = layer_limit(job, cfg, gaps, stall)
    what = (f"{job.mode} layer {job.name + ' ' if job.name else ''}{job.cin}->{job.cout} "
            f"k={job.k} stride={job.stride} {job.height}x{job.width}")
    dut.start.value = 1
    await RisingEdge(dut.clk)
    dut.start.value = 0
    done = []

    def finished():
        if bit(dut.done, f"running the {what}"):
            done.append(1)
        return bool(done)

    hint = ("the engine hangs or is far slower than get_exp_cycles predicts; "
            "run_jobs/run_net(max_cycles=...) sets another limit")
    beats = pack_inputs(job, cfg, x)
    put = cocotb.start_soon(stream_put(dut, "i", beats, dut.clk, rng, gaps, max_cycles=max_cycles,
                                       what=f"input of the {what}", hint=hint))
    out = await stream_get(dut, "o", dut.clk, rng=rng, stall=stall, stop=finished,
                           max_cycles=max_cycles, what=f"outputs of the {what} until done",
                           hint=hint)
    await put
    await ReadOnly()
    counters = {n: int(getattr(dut, n).value) for n in COUNTERS}
    await RisingEdge(dut.clk)
    return out, counters


@cocotb.test()
async def conv_request(dut):
    with open(os.environ["NMACCEL_CONV_REQUEST"], "rb") as f:
        req = pickle.load(f)
    cfg = ConvConfig.from_dict(req["config"])
    rng = random.Random(req.get("seed", 0))
    gaps, stall = req.get("gaps", 0.0), req.get("stall", 0.0)
    limit = req.get("max_cycles")
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
            out.append(await run_layer(dut, cfg, job, x, rng, gaps, stall, limit))
    else:
        acts = [img.astype(np.int64)[None] for img in req["images"]]
        counters = [[] for _ in acts]
        logits = None
        for job, how in zip(req["jobs"], req["inputs"]):
            await load_layer(dut, cfg, job)
            nxt, vs = [], []
            for n, x in enumerate(acts):
                x = layer_input(job, x, how)
                beats, cnt = await run_layer(dut, cfg, job, x, rng, gaps, stall, limit)
                v, q = unpack_outputs(job, cfg, beats)
                nxt.append(q)
                vs.append(v.reshape(-1))
                counters[n].append(cnt)
            acts = nxt
            logits = np.stack(vs)
        out = {"logits": logits, "counters": counters}
    with open(os.environ["NMACCEL_CONV_RESULT"], "wb") as f:
        pickle.dump(out, f)
