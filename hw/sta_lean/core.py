"""``LeanCore``: the memory-lean STA's sequencer, one-PE GEMM datapath and buffers, around the
time-shared :class:`~nmaccel.hw.sta_lean.vector.SharedVectorUnit`.

It runs programs of the STA instruction set (:mod:`nmaccel.spec.sta_isa`) compiled for a
one-PE :class:`~nmaccel.spec.config.StaConfig` (``rows = cols = 1``; the ``icebreaker``
preset), with the same memory images, and produces the golden model's outputs bit for bit.

This first version runs **GEMM commands into OBUF** (sparse N:M or dense weights from WBUF,
activations from ABUF, no post-op) and NOPs; every other command stops the run with an error
(``dest`` for another destination, post-op or operand source; ``opcode`` for LAYERNORM,
REQUANT and FETCH), never a wrong result. Buffer addresses are checked as they are formed:
an address beyond its buffer stops the run with that buffer's error code before the access.

Schedule, one output at a time (``rows = cols = 1``: a tile is one feature of one token)::

    FETCH  DECODE  { TILE  PARAM  k_steps × MAC  2 × DRAIN  requant in the shared unit } NEXT

``TILE`` reads the feature's PBUF entry, ``PARAM`` loads its bias into the accumulator; each
MAC cycle reads one weight word and one activation window (the products are registered, the
accumulator adds them a cycle later); the output goes through the shared unit's REQUANT
(:func:`~nmaccel.spec.lean_vector.op_cycles`) and is written to OBUF as it leaves the unit.
:func:`~nmaccel.spec.lean_timing.program_cycles` counts the same states.

Ports
    ``start`` In 1, ``count`` In (commands to run from CBUF entry 0; sampled with ``start``).
    ``busy``, ``done``, ``error`` Out 1; ``code`` Out 8 (:data:`~nmaccel.spec.sta_isa.ERRORS`),
    ``command`` Out 16 (the command that raised it); ``cycles`` Out 32 (start to done).
    The buffers are attributes (``cbuf``, ``wbuf``, ``abuf``, ``pbuf``, ``obuf``:
    ``amaranth.lib.memory.Memory``) that a testbench loads and reads directly; the host port
    comes with the board top.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from nmaccel.hw.sta.isa import (
    ASrc,
    Dest,
    Mode,
    Opcode,
    Osel,
    Post,
    WSrc,
    command_layout,
    param_layout,
)
from nmaccel.hw.sta_lean.vector import SharedVectorUnit
from nmaccel.spec import lean_vector as lv
from nmaccel.spec import sta_isa
from nmaccel.spec.config import StaConfig, clog2

__all__ = ["LeanCore"]

ERR = sta_isa.ERROR_CODES
PTR_BITS = sta_isa.DIM_BITS + 4                          # base + tiles x steps, unwrapped


class LeanCore(wiring.Component):
    """The lean STA core (see the module docstring).

    Parameters
    ----------
    config : StaConfig
        A one-PE configuration (``rows == cols == 1``).
    """

    def __init__(self, config: StaConfig) -> None:
        self.config = StaConfig.require(config)
        if config.rows != 1 or config.cols != 1:
            raise ValueError(f"the lean STA has one PE: rows and cols must be 1, not "
                             f"{config.rows}x{config.cols}")
        cfg = config
        self.cmd_layout = command_layout(cfg)
        self.param_layout = param_layout(cfg)
        self.cbuf = Memory(shape=unsigned(self.cmd_layout.size), depth=cfg.cbuf_depth, init=[])
        self.wbuf = Memory(shape=unsigned(sta_isa.space_width(cfg, "WBUF")),
                           depth=cfg.wbuf_depth, init=[])
        self.abuf = Memory(shape=unsigned(sta_isa.space_width(cfg, "ABUF")),
                           depth=cfg.abuf_depth, init=[])
        self.pbuf = Memory(shape=unsigned(self.param_layout.size), depth=cfg.pbuf_depth, init=[])
        self.obuf = Memory(shape=signed(cfg.acc_bits), depth=cfg.obuf_depth, init=[])
        super().__init__({
            "start": In(1), "count": In(clog2(cfg.cbuf_depth + 1)),
            "busy": Out(1), "done": Out(1), "error": Out(1), "code": Out(8),
            "command": Out(16), "cycles": Out(32),
        })

    def elaborate(self, platform) -> Module:
        cfg = self.config
        m = Module()
        for name in ("cbuf", "wbuf", "abuf", "pbuf", "obuf"):
            m.submodules[name] = getattr(self, name)
        m.submodules.vec = vec = SharedVectorUnit(cfg)
        c_rd = self.cbuf.read_port(domain="sync")
        w_rd = self.wbuf.read_port(domain="sync")
        a_rd = self.abuf.read_port(domain="sync")
        p_rd = self.pbuf.read_port(domain="sync")
        o_wr = self.obuf.write_port()

        # -- run state -------------------------------------------------------------------
        count = Signal.like(self.count)
        pc = Signal(16)
        cmd = Signal(self.cmd_layout)
        m.d.comb += [self.command.eq(pc), c_rd.addr.eq(pc)]
        with m.If(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)

        # -- tile walk: running pointers (no multiplier) ---------------------------------
        ct = Signal(sta_isa.DIM_BITS)
        rt = Signal(sta_isa.DIM_BITS)
        s = Signal(sta_isa.DIM_BITS)                    # step being issued
        w_ptr, w_row = Signal(PTR_BITS), Signal(PTR_BITS)
        a_row = Signal(PTR_BITS)
        o_ptr = Signal(PTR_BITS)
        p_ptr = Signal(PTR_BITS)
        ratio = sta_isa.dense_ratio(cfg)
        dense = cmd.mode == Mode.DENSE
        chunk = Mux(dense, s // ratio if ratio > 1 else s, s)
        a_ptr = Signal(PTR_BITS)
        m.d.comb += [a_ptr.eq(a_row + chunk), w_rd.addr.eq(w_ptr), a_rd.addr.eq(a_ptr),
                     p_rd.addr.eq(p_ptr)]

        # -- the PE: lanes products, registered, summed into the accumulator ----------------
        L, n, mm = cfg.lanes, cfg.n, cfg.m
        wb, ab = cfg.weight_bits, cfg.act_bits
        E = wb + cfg.index_bits
        slice_reg = Signal(range(max(ratio, 2)))          # dense slice of the data being read
        products = [Signal(signed(wb + ab), name=f"prod{j}") for j in range(L)]
        data_valid = Signal()                            # read data of an issued step
        prod_valid = Signal()                            # its products, registered
        acc = Signal(signed(cfg.acc_bits))
        issue = Signal()
        m.d.sync += [data_valid.eq(issue), prod_valid.eq(data_valid)]
        with m.If(issue):
            m.d.sync += slice_reg.eq(s % ratio if ratio > 1 else 0)
        window = [a_rd.data[j * ab:(j + 1) * ab].as_signed() for j in range(cfg.acts_per_cycle)]
        for j in range(L):
            sw = w_rd.data[j * E:j * E + wb].as_signed()
            idx = w_rd.data[j * E + wb:(j + 1) * E]
            sparse_a = Signal(signed(ab), name=f"sparse_a{j}")
            with m.Switch(idx):
                for k in range(mm):
                    with m.Case(k):
                        m.d.comb += sparse_a.eq(window[(j // n) * mm + k])
            dw = w_rd.data[j * wb:(j + 1) * wb].as_signed()
            dense_a = Signal(signed(ab), name=f"dense_a{j}")
            with m.Switch(slice_reg):
                for r in range(ratio):
                    with m.Case(r):
                        m.d.comb += dense_a.eq(window[r * L + j] if r * L + j < len(window)
                                               else 0)
            m.d.sync += products[j].eq(Mux(dense, dw * dense_a, sw * sparse_a))
        with m.If(prod_valid):
            m.d.sync += acc.eq(acc + sum(products))

        # -- the shared unit: one REQUANT per output -------------------------------------
        par = Signal(self.param_layout)
        m.d.comb += [vec.cmd.payload.op.eq(lv.VecOp.REQUANT), vec.cmd.payload.n.eq(1),
                     vec.cmd.payload.osel.eq(cmd.osel), vec.cmd.payload.mult.eq(par.mult),
                     vec.cmd.payload.shift.eq(par.shift), vec.i.payload.a.eq(acc),
                     o_wr.addr.eq(o_ptr), o_wr.data.eq(vec.o.payload.y)]

        def fail(code):
            self._stop(m, code)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [count.eq(self.count), pc.eq(0), self.cycles.eq(0),
                                 self.done.eq(0), self.error.eq(0), self.code.eq(0)]
                    with m.If((self.count == 0) | (self.count > cfg.cbuf_depth)):
                        fail(ERR["count"])
                    with m.Else():
                        m.d.sync += self.busy.eq(1)
                        m.next = "FETCH"
            with m.State("FETCH"):                      # CBUF[pc] is read
                m.next = "DECODE"
            with m.State("DECODE"):
                c = self.cmd_layout(c_rd.data)
                m.d.sync += [cmd.eq(c), ct.eq(0), rt.eq(0), s.eq(0), w_ptr.eq(c.w_base),
                             w_row.eq(c.w_base), a_row.eq(c.a_base), o_ptr.eq(c.o_base),
                             p_ptr.eq(c.p_base)]
                with m.Switch(c.op):
                    with m.Case(Opcode.NOP):
                        m.next = "NEXT"
                    with m.Case(Opcode.GEMM):
                        with m.If((c.m_tiles == 0) | (c.n_tiles == 0) | (c.k_steps == 0)):
                            self._stop(m, ERR["zero"])
                        with m.Elif(c.osel.as_value() > Osel.SCORE.value):
                            self._stop(m, ERR["osel"])
                        with m.Elif((c.dest != Dest.OBUF) | (c.post != Post.NONE)
                                    | (c.wsrc != WSrc.WBUF) | (c.asrc != ASrc.ABUF)):
                            self._stop(m, ERR["dest"])
                        with m.Else():
                            m.next = "TILE"
                    with m.Default():
                        self._stop(m, ERR["opcode"])
            with m.State("TILE"):                       # PBUF[p_ptr] is read
                with m.If(p_ptr >= cfg.pbuf_depth):
                    fail(ERR["pbuf"])
                with m.Elif(o_ptr >= cfg.obuf_depth):
                    fail(ERR["obuf"])
                with m.Else():
                    m.next = "PARAM"
            with m.State("PARAM"):
                p = self.param_layout(p_rd.data)
                m.d.sync += [par.eq(p), acc.eq(p.bias), s.eq(0)]
                m.next = "MAC"
            with m.State("MAC"):                        # one weight word, one window a cycle
                with m.If(w_ptr >= cfg.wbuf_depth):
                    fail(ERR["wbuf"])
                with m.Elif(a_ptr >= cfg.abuf_depth):
                    fail(ERR["abuf"])
                with m.Else():
                    m.d.comb += issue.eq(1)
                    m.d.sync += [s.eq(s + 1), w_ptr.eq(w_ptr + 1)]
                    with m.If(s == cmd.k_steps - 1):
                        m.next = "DRAIN1"
            with m.State("DRAIN1"):                     # the last products are registered
                m.next = "DRAIN2"
            with m.State("DRAIN2"):                     # ... and added
                m.next = "VCMD"
            with m.State("VCMD"):
                m.d.comb += vec.cmd.valid.eq(1)
                with m.If(vec.cmd.ready):
                    m.next = "VIN"
            with m.State("VIN"):
                m.d.comb += vec.i.valid.eq(1)
                with m.If(vec.i.ready):
                    m.next = "VOUT"
            with m.State("VOUT"):                       # the result is written as it leaves
                m.d.comb += vec.o.ready.eq(1)
                with m.If(vec.o.valid):
                    m.d.comb += o_wr.en.eq(1)
                    m.d.sync += [o_ptr.eq(o_ptr + 1), p_ptr.eq(p_ptr + 1), rt.eq(rt + 1)]
                    with m.If(rt == cmd.m_tiles - 1):   # the token's last feature
                        m.d.sync += [rt.eq(0), ct.eq(ct + 1), p_ptr.eq(cmd.p_base),
                                     w_ptr.eq(w_row), a_row.eq(a_row + cmd.a_stride)]
                        with m.If(ct == cmd.n_tiles - 1):
                            m.next = "NEXT"
                        with m.Else():
                            m.next = "TILE"
                    with m.Else():
                        m.next = "TILE"
            with m.State("NEXT"):
                m.d.sync += pc.eq(pc + 1)
                with m.If(pc + 1 == count):
                    m.d.sync += [self.busy.eq(0), self.done.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.next = "FETCH"
        return m

    def _stop(self, m, code):
        m.d.sync += [self.error.eq(1), self.done.eq(1), self.busy.eq(0), self.code.eq(code)]
        m.next = "IDLE"
