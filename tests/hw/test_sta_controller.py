# amaranth: UnusedElaboratable=no
"""StaController alone (CBUF and PBUF memories; the MAC path, post stage, softmax path and
vector sequencer replaced by the testbench): per-command timing from the spec (RUN_START,
COMMAND_OVERHEAD), the beats and tile records of a GEMM, stalls, SYNC waits, parameter
words, vector commands and error status."""

from __future__ import annotations

import pytest
from amaranth.hdl import Elaboratable, Module, unsigned
from amaranth.lib import memory, wiring
from amaranth.sim import Simulator

from nmaccel.hw.sta import isa as hw_isa
from nmaccel.hw.sta.buffers import buffer_specs
from nmaccel.hw.sta.controller import StaController
from nmaccel.spec import sta_isa
from nmaccel.spec.config import StaConfig
from nmaccel.spec.sta_isa import ERROR_CODES, Dest, Mode, Opcode, Post
from nmaccel.spec.sta_timing import COMMAND_OVERHEAD, RUN_START

CFG = StaConfig(rows=2, cols=2, lanes=4, n=2, m=4, softmax_lanes=2, max_seq=16, wbuf_depth=64,
                abuf_depth=64, obuf_depth=64, pbuf_depth=32, cbuf_depth=8, vbuf_depth=64)
R, C = CFG.rows, CFG.cols


class _Harness(Elaboratable):
    def __init__(self, cfg, commands, params=()):
        self.cfg = cfg
        self.ctrl = StaController(cfg)
        self.images = {"CBUF": list(commands), "PBUF": list(params)}

    def elaborate(self, platform):
        m = Module()
        m.submodules.ctrl = ctrl = self.ctrl
        specs = buffer_specs(self.cfg)
        ports = {}
        for name in ("CBUF", "PBUF"):
            spec = specs[name]
            init = self.images[name] + [0] * (spec.depth - len(self.images[name]))
            mem = m.submodules[name.lower()] = memory.Memory(
                shape=unsigned(spec.width), depth=spec.depth, init=init)
            ports[name] = mem.read_port()
        wiring.connect(m, ctrl.cbuf, ports["CBUF"])
        wiring.connect(m, ctrl.pbuf, ports["PBUF"])
        m.d.sync += ctrl.cbuf_word_addr.eq(ports["CBUF"].addr)    # as BufferPorts does
        return m


EVENTS = ("stall", "barrier_wait", "softmax_wait", "command_done", "vector_go", "first_fetch")


def _run(commands, params=(), count=None, stimulus=None, cfg=CFG, max_cycles=300):
    """Runs the program; ``stimulus(ctx, ctrl, cycle)`` drives the stub inputs. Returns the
    trace (one dict per cycle from the START cycle on) and the final status."""
    top = _Harness(cfg, commands, params)
    ctrl = top.ctrl
    trace, final = [], {}

    async def tb(ctx):
        ctx.set(ctrl.start.payload.count, len(commands) if count is None else count)
        ctx.set(ctrl.start.valid, 1)
        for cycle in range(max_cycles):
            if stimulus:
                stimulus(ctx, ctrl, cycle)
            row = {name: ctx.get(getattr(ctrl, name)) for name in EVENTS}
            row["beat"] = ctx.get(ctrl.beats.payload) if ctx.get(ctrl.beats.valid) else None
            row["claim"] = ctx.get(ctrl.claims.payload) if ctx.get(ctrl.claims.valid) else None
            row["pc"] = ctx.get(ctrl.pc)
            trace.append(row)
            await ctx.tick()
            ctx.set(ctrl.start.valid, 0)
            if not ctx.get(ctrl.status.busy):
                break
        final.update(status=ctx.get(ctrl.status.as_value()), cycles=cycle + 1,
                     params=[ctx.get(ctrl.params[i].as_value()) for i in range(2)])

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return trace, final


def _gemm(**fields):
    return sta_isa.encode_command(CFG, op=Opcode.GEMM, **fields)


def _command_cycles(trace):
    """Cycles of each command, FETCH to NEXT (the first FETCH is the cycle after START)."""
    ends = [i for i, row in enumerate(trace) if row["command_done"]]
    return [end - start for start, end in zip([0] + ends, ends)]


def test_gemm_beats_records_and_timing():
    fields = dict(mode=Mode.SPARSE, m_tiles=2, n_tiles=3, k_steps=3, w_base=4, a_base=2,
                  a_stride=5, o_base=6, p_base=1, dest=Dest.OBUF)
    trace, final = _run([_gemm(**fields), sta_isa.encode_command(CFG, op=Opcode.NOP)])
    beats = [(i, row["beat"]) for i, row in enumerate(trace) if row["beat"] is not None]
    assert trace[0]["first_fetch"]
    assert beats[0][0] == 1 + RUN_START                         # FETCH is cycle 1
    assert len(beats) == 2 * 3 * 3 and [i for i, _ in beats] == \
        list(range(beats[0][0], beats[0][0] + 18))             # k_steps >= R: no stalls
    k = 0
    for ct in range(3):
        for rt in range(2):
            for s in range(3):
                beat = beats[k][1]
                k += 1
                assert (beat.first, beat.last) == (s == 0, s == 2)
                assert beat.w_addr == 4 + rt * 3 + s and beat.a_addr == 2 + ct * 5 + s
                assert beat.record.obuf_addr == 6 + (ct * 2 + rt) * R
                assert beat.record.pbuf_addr == 1 + rt * R
                assert beat.record.tag.dest == hw_isa.Dest.OBUF        # the hardware enum
                assert beat.record.tag.lastcmd == (ct == 2 and rt == 1)
    assert _command_cycles(trace) == [COMMAND_OVERHEAD + 18, COMMAND_OVERHEAD - 1]
    status = sta_isa.decode_status(final["status"])
    assert status.done and not status.error and not status.busy


def test_tile_completing_beats_wait_for_the_drain():
    cfg = CFG.replace(rows=4, softmax_lanes=2)
    cmd = sta_isa.encode_command(cfg, op=Opcode.GEMM, m_tiles=1, n_tiles=3, k_steps=1)
    trace, _ = _run([cmd], cfg=cfg)
    beats = [i for i, row in enumerate(trace) if row["beat"] is not None]
    stalls = [i for i, row in enumerate(trace) if row["stall"]]
    assert [b - beats[0] for b in beats] == [0, 4, 8]           # R cycles apart
    assert len(stalls) == 2 * (4 - 1)
    assert _command_cycles(trace) == [COMMAND_OVERHEAD + 3 + len(stalls)]


def test_barrier_and_softmax_waits_and_the_bank_claim():
    def stimulus(ctx, ctrl, cycle):
        ctx.set(ctrl.mac_busy, cycle < 12)              # the barrier holds until cycle 12
        ctx.set(ctrl.bank_free, cycle >= 20)            # then the bank until cycle 20
        ctx.set(ctrl.softmax_pending, 1 if cycle < 30 else 0)
    softmax = dict(mode=Mode.DENSE, m_tiles=1, n_tiles=1, k_steps=1, dest=Dest.SOFTMAX,
                   length=2, o_base=3, barrier=1)
    trace, final = _run([_gemm(**softmax), _gemm(m_tiles=1, n_tiles=1, k_steps=1, wait_sm=1)],
                        stimulus=stimulus)
    barrier = [i for i, row in enumerate(trace) if row["barrier_wait"]]
    waits = [i for i, row in enumerate(trace) if row["softmax_wait"]]
    claims = [(i, row["claim"]) for i, row in enumerate(trace) if row["claim"] is not None]
    sync = RUN_START                                    # SYNC of the first command
    assert barrier == list(range(sync, 12))
    assert waits[:8] == list(range(12, 20))             # bank not free
    assert [i for i, _ in claims] == [20] and \
        (claims[0][1].sbuf_base, claims[0][1].length) == (3, 2)
    second = [i for i, row in enumerate(trace) if row["beat"] is not None][1]
    assert waits[8:] == list(range(second - 1 - len(waits[8:]), second - 1))
    assert second == 31                                 # wait_sm = 1: pending 0 from 30
    assert sta_isa.decode_status(final["status"]).done


def test_vector_command_reads_its_parameters_and_waits_for_the_sequencer():
    length, p_base = 5, 3
    params = [0] * 16
    params[p_base + length] = sta_isa.encode_params(CFG, 0, 111, 7)
    params[p_base + length + 1] = sta_isa.encode_params(CFG, 0, 222, 9)
    cmd = sta_isa.encode_command(CFG, op=Opcode.LAYERNORM, n_tiles=1, length=length,
                                 p_base=p_base)

    def stimulus(ctx, ctrl, cycle):
        ctx.set(ctrl.vector_done, cycle == 20)
    trace, final = _run([cmd], params, stimulus=stimulus)
    go = [i for i, row in enumerate(trace) if row["vector_go"]]
    assert go == list(range(1 + RUN_START + 2, 21))      # PARAM1, PARAM2, then VEC
    assert final["params"] == [params[p_base + length], params[p_base + length + 1]]
    assert _command_cycles(trace) == [COMMAND_OVERHEAD + 2 + len(go)]


@pytest.mark.parametrize("fields, code", [
    (dict(op=7, m_tiles=1, n_tiles=1, k_steps=1), "opcode"),
    (dict(op=1, m_tiles=0, n_tiles=1, k_steps=1), "zero"),
    (dict(op=1, m_tiles=1, n_tiles=1, k_steps=65), "wbuf"),
    (dict(op=1, m_tiles=1, n_tiles=2, k_steps=1, a_base=63, a_stride=1), "abuf"),
    (dict(op=1, m_tiles=1, n_tiles=1, k_steps=1, o_base=63), "obuf"),
    (dict(op=1, m_tiles=1, n_tiles=1, k_steps=1, p_base=31), "pbuf"),
    (dict(op=1, m_tiles=1, n_tiles=1, k_steps=1, osel=7), "osel"),
    (dict(op=1, m_tiles=1, n_tiles=1, k_steps=1, dest=6), "dest"),
    (dict(op=1, m_tiles=1, n_tiles=1, k_steps=1, post=Post.ADD), "dest"),
    (dict(op=1, m_tiles=1, n_tiles=1, k_steps=1, dest=Dest.VBUF, o_base=63), "vbuf"),
    (dict(op=1, mode=Mode.DENSE, m_tiles=2, n_tiles=1, k_steps=1, dest=Dest.SOFTMAX,
          length=2), "seq"),
    (dict(op=1, m_tiles=1, n_tiles=1, k_steps=1, wsrc=1), "shape"),   # W from ABUF: dense
    (dict(op=2, n_tiles=1, length=0), "zero"),
    (dict(op=3, n_tiles=2, length=1, a_base=63, a_stride=1), "vbuf"),
    (dict(op=3, n_tiles=1, length=1, dest=Dest.ABUF_T), "dest"),
])
def test_bad_commands_stop_with_their_error_code(fields, code):
    bad = sta_isa.encode_command(CFG, **fields)
    trace, final = _run([sta_isa.encode_command(CFG, op=Opcode.NOP), bad])
    status = sta_isa.decode_status(final["status"])
    assert status.error and not status.busy and not status.done
    assert (status.code, status.command) == (ERROR_CODES[code], 1)
    assert not any(row["beat"] is not None for row in trace)


@pytest.mark.parametrize("count", [0, CFG.cbuf_depth + 1])
def test_bad_command_count(count):
    _, final = _run([sta_isa.encode_command(CFG, op=Opcode.NOP)], count=count)
    status = sta_isa.decode_status(final["status"])
    assert status.error and status.code == ERROR_CODES["count"] and final["cycles"] == 1


def test_metadata_error_stops_the_run():
    def stimulus(ctx, ctrl, cycle):
        ctx.set(ctrl.meta_err, cycle >= 9)
    _, final = _run([_gemm(m_tiles=1, n_tiles=1, k_steps=8)], stimulus=stimulus)
    status = sta_isa.decode_status(final["status"])
    assert status.error and status.code == ERROR_CODES["meta"] and final["cycles"] == 11


@pytest.mark.parametrize("busy_input", ["mac_busy", "post_busy", "softmax_busy",
                                        "softmax_full"])
def test_an_error_is_raised_once_the_work_in_flight_has_finished(busy_input):
    """A failed run stays busy (HALT) until the MAC path, post stage and softmax path are
    empty, so none of its results lands in a buffer after the next START (a random stream
    hung the next run: a softmax block of the failed run still in the FIFO)."""
    def stimulus(ctx, ctrl, cycle):
        ctx.set(ctrl.meta_err, cycle >= 9)
        ctx.set(getattr(ctrl, busy_input), 9 <= cycle < 40)
    trace, final = _run([_gemm(m_tiles=1, n_tiles=1, k_steps=8)], stimulus=stimulus)
    status = sta_isa.decode_status(final["status"])
    assert status.error and status.code == ERROR_CODES["meta"] and final["cycles"] == 41
