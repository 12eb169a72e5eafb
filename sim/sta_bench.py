"""cocotb bench that executes STA host scripts (:func:`nmaccel.sim.sta_host.host_script`).

Run by :mod:`nmaccel.sim.sta_rtl` with ``NMACCEL_STA_JOB`` naming a JSON header
``{"runs": N, "idle": p, "backpressure": p, "seed": s, "backdoor": bool, "sdram": timing}``
(``sdram``: the :class:`~nmaccel.spec.sdram.SdramTiming` fields of a core with external
memory, whose ``sdram__`` pins then go to a checking
:class:`~nmaccel.sim.sdram_model.SdramModel`; the first run waits until STATUS says
``ext_ready``; a backdoor run's ``ext`` blocks are put straight into the model, other runs
write the SDRAM through the host port (CSR EXT_*); the model's violations are
returned and fail the run in the parent; ``backdoor``:
deposit the memory images and read OBUF through VPI instead of the host port, for speed; the
host port is then used only for START, STATUS and the counters) and, next to it, one file
per run, ``run-<n>.json`` = ``{"script": ..., "max_cycles": limit, "predicted_cycles": c}``,
which the parent writes while earlier runs simulate (``{"cancel": true}`` ends the job early;
each file is waited for at most ``NMACCEL_STA_JOB_WAIT`` seconds). It writes the raw read
data of every run to ``NMACCEL_STA_OUT``.
Python touches the clock only while it loads memories and reads results: during a run it
sleeps until ``done`` or ``error`` rises, so the simulator runs free (the cycles/s figure is
taken over that window).

Every wait has a cycle limit: a run waits at most its ``max_cycles`` entry (set by
:func:`nmaccel.sim.sta_rtl.run_programs` from the cycle model) for ``done``/``error``, a host
port handshake at most :data:`HANDSHAKE_LIMIT` cycles (not counting the bench's own random
idle and back-pressure cycles). Past a limit the test fails with a
:class:`~nmaccel.sim.cocotb_streams.BenchTimeout` saying what it waited for.
"""

from __future__ import annotations

import json
import os
import random
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge, Timer

from nmaccel.sim.cocotb_streams import CLOCK_NS, BenchTimeout, bit, wait_high
from nmaccel.spec.sta_isa import decode_status

#: Cycles a host waits for the external memory's power-up beyond its ``init_wait``.
EXT_READY_MARGIN = 20_000

#: Cycles a host-port handshake (``wr``/``rd`` ready, ``rd_data`` valid) may take; the core
#: answers within a few cycles when idle.
HANDSHAKE_LIMIT = 10_000


class StaHostDriver:
    """Drives StaCore's ``wr``/``rd`` streams and sinks ``rd_data``, with random idle cycles
    on the sources and random back-pressure on the sink."""

    def __init__(self, dut, addr_bits: int, rng: random.Random, idle: float, backpressure: float):
        self.dut, self.addr_bits, self.rng = dut, addr_bits, rng
        self.idle, self.backpressure = idle, backpressure

    async def _idle(self, p):
        while p > 0 and self.rng.random() < p:
            await RisingEdge(self.dut.clk)

    async def _put(self, prefix: str, payload: int):
        dut = self.dut
        await self._idle(self.idle)
        getattr(dut, f"{prefix}__payload").value = payload
        getattr(dut, f"{prefix}__valid").value = 1
        ready = getattr(dut, f"{prefix}__ready")
        what = f"the host port's {prefix} request 0x{payload:x}"
        for _ in range(HANDSHAKE_LIMIT):
            await ReadOnly()
            ok = bit(ready, what)
            await RisingEdge(dut.clk)
            if ok:
                break
        else:
            raise BenchTimeout(f"waited {HANDSHAKE_LIMIT} cycles (the limit) for "
                               f"{prefix}__ready to take {what}")
        getattr(dut, f"{prefix}__valid").value = 0

    async def write(self, addr: int, data: int):
        await self._put("wr", addr | (data << self.addr_bits))

    async def read(self, addr: int) -> int:
        await self._put("rd", addr)
        dut = self.dut
        what = f"the answer to the host read of address 0x{addr:x}"
        for _ in range(HANDSHAKE_LIMIT):
            await self._idle(self.backpressure)
            dut.rd_data__ready.value = 1
            await ReadOnly()
            valid = bit(dut.rd_data__valid, what)
            data = dut.rd_data__payload.value
            await RisingEdge(dut.clk)
            dut.rd_data__ready.value = 0
            if valid:
                return int(data)
        raise BenchTimeout(f"waited {HANDSHAKE_LIMIT} cycles (the limit) with rd_data__ready "
                           f"high for {what} (rd_data__valid never rose)")


class MemoryBackdoor:
    """Whole-word access to one memory of the model through VPI, element by element.

    Goes through the GPI handles of the elements (``get_handle_by_index``) rather than
    cocotb's per-element objects: 0.2 µs a word instead of 8-28 µs (a whole-layer run
    deposits ~34k words). Writes are deposits, applied at once (the bench waits a clock edge
    after loading). Falls back to cocotb's public handles if the GPI calls are missing."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self.width = len(handle[0])
        self._raw = {}
        self._gpi = hasattr(handle, "_handle") and hasattr(handle._handle, "get_handle_by_index")

    def _element(self, entry: int):
        raw = self._raw.get(entry)
        if raw is None:
            raw = self._raw[entry] = self.handle._handle.get_handle_by_index(entry)
            if not raw:
                raise IndexError(f"{self.handle._path} has no entry {entry}")
        return raw

    def write(self, entry: int, word: int) -> None:
        if not self._gpi:
            self.handle[entry].value = word
        elif self.width <= 32:
            self._element(entry).set_signal_val_int(0, word)            # 0: deposit
        else:
            self._element(entry).set_signal_val_binstr(0, f"{word:0{self.width}b}")

    def read(self, entry: int) -> int:
        if not self._gpi:
            return int(self.handle[entry].value)
        return int(self._element(entry).get_signal_val_binstr(), 2)


async def wait_ext_ready(host: StaHostDriver, status_addr: int, limit: int, clk) -> None:
    """Poll STATUS until ``ext_ready`` (the SDRAM's power-up is done), at most ``limit``
    cycles of waiting."""
    waited = 0
    while not decode_status(await host.read(status_addr)).ext_ready:
        waited += 8
        for _ in range(8):
            await RisingEdge(clk)
        if waited > limit:
            raise BenchTimeout(f"STATUS.ext_ready still low after {limit} cycles: the SDRAM "
                               "controller never finished its power-up")


def _wait_for_job(path: str, wait: float) -> dict:
    """The job file at ``path``; a process started ahead of its job
    (:class:`nmaccel.sim.sta_rtl.Simulation`) polls for it up to ``wait`` seconds (the parent
    writes it whole, by rename)."""
    deadline = time.monotonic() + wait
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no STA job at {path} after {wait:g} s: the parent process "
                               "that started this simulator neither sent programs nor "
                               "cancelled it")
        time.sleep(0.002)
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


@cocotb.test()
async def run_sta_job(dut):
    started = time.time()                     # the parent's spawn time to this: start-up
    wait = float(os.environ.get("NMACCEL_STA_JOB_WAIT", "0"))
    job = _wait_for_job(os.environ["NMACCEL_STA_JOB"], wait)
    if job.get("cancel"):                     # the parent had no programs for this process
        with open(os.environ["NMACCEL_STA_OUT"], "w", encoding="utf-8") as fh:
            json.dump({"results": [], "cancelled": True, "started": started,
                       "finished": time.time()}, fh)
        return
    rng = random.Random(job.get("seed", 0))
    # impl="gpi": the clock toggles in C, so Python sleeps while a run is in flight.
    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns", impl="gpi").start())
    for name in ("wr__valid", "rd__valid", "rd_data__ready"):
        getattr(dut, name).value = 0
    dut.rst.value = 1
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    host = StaHostDriver(dut, job["addr_bits"], rng, job.get("idle", 0.0),
                         job.get("backpressure", 0.0))
    backdoor = bool(job.get("backdoor"))
    sdram = None
    if job.get("sdram"):
        from nmaccel.sim.sdram_model import SdramModel
        from nmaccel.spec.sdram import SdramTiming
        sdram = SdramModel(dut, "sdram__", SdramTiming(**job["sdram"]), seed=job.get("seed", 0))
        cocotb.start_soon(sdram.run(dut.clk))
    ext_ready = False
    job_dir = os.path.dirname(os.environ["NMACCEL_STA_JOB"])
    results = []
    memories = {}

    def memory(name: str) -> MemoryBackdoor:
        if name not in memories:
            memories[name] = MemoryBackdoor(getattr(dut, name))
        return memories[name]

    for n in range(int(job["runs"])):
        t_wait = time.perf_counter()
        part = _wait_for_job(os.path.join(job_dir, f"run-{n}.json"), wait)
        if part.get("cancel"):                # the parent failed while writing the job
            break
        script, limit = part["script"], part["max_cycles"]
        wait_s = time.perf_counter() - t_wait
        t_load = time.perf_counter()
        if sdram is not None and not ext_ready:
            # the SDRAM's power-up first: host writes of it (EXT_*) and FETCHes need it
            await wait_ext_ready(host, script["status"], sdram.t.init_wait + EXT_READY_MARGIN,
                                 dut.clk)
            ext_ready = True
        if backdoor:
            # Deposit whole memory words through VPI (no clock cycles, no host port), and the
            # external-memory image straight into the SDRAM model.
            for mem, entries in script["images"].items():
                backdoor_memory = memory(mem)
                for entry, word in entries:
                    backdoor_memory.write(entry, int(word, 16))
            if script.get("ext"):
                if sdram is None:
                    raise ValueError("a run with an external-memory image on a core without "
                                     "external memory")
                digits = -(-sdram.t.data_bits // 4)
                for base, text in script["ext"]:
                    sdram.load((int(text[i:i + digits], 16)
                                for i in range(0, len(text), digits)), base)
            await RisingEdge(dut.clk)
        else:
            for addr, data in script["writes"]:
                await host.write(addr, data)
        load_s = time.perf_counter() - t_load
        await host.write(*script["start"])
        t0 = time.perf_counter()
        predicted = part.get("predicted_cycles")
        why = (f"the cycle model predicts {predicted} cycles" if predicted is not None
               else "a cycle limit given by the caller, the cycle model not run")
        await wait_high({"done": dut.done, "error": dut.error}, limit,
                        f"program {n} ({script['start'][1]} commands; {why}) to finish "
                        "after START",
                        "the core hangs or runs far longer than the model says; "
                        "run_programs(max_cycles=...) sets another limit", period_ns=CLOCK_NS)
        run_s = time.perf_counter() - t0
        t_read = time.perf_counter()
        await RisingEdge(dut.clk)
        status = await host.read(script["status"])
        counters = [await host.read(a) for a in script["counters"]]
        cyclog = [await host.read(a) for a in script["cyclog"]]
        obuf = None
        if decode_status(status).error:
            outputs = []
        elif backdoor:
            outputs = []
            obuf = {f"{mem}:{e}": memory(mem).read(e) for mem, e in script["backdoor_reads"]}
        else:
            outputs = [await host.read(a) for a in script["outputs"]]
        results.append({"status": status, "counters": counters, "cyclog": cyclog,
                        "outputs": outputs, "obuf": obuf, "run_seconds": run_s,
                        "load_seconds": load_s, "load_writes": len(script["writes"]),
                        "wait_seconds": wait_s,
                        "read_seconds": time.perf_counter() - t_read})
        await Timer(1, unit="ns")
    with open(os.environ["NMACCEL_STA_OUT"], "w", encoding="utf-8") as fh:
        json.dump({"results": results, "started": started, "finished": time.time(),
                   "sdram_violations": sdram.violations if sdram is not None else [],
                   "sdram_counts": sdram.counts if sdram is not None else {}}, fh)
