"""ConvEngine: line buffer → k×k window generator → PE array → accumulators →
post-processing → output FIFO, for one layer at a time (settings at run time).

The host writes the layer's weights (``wmem_*``) and per-channel parameters (``pmem_*``)
in the formats of :mod:`nmaccel.model.conv_ref`, sets ``layer`` (fields of
:func:`nmaccel.model.conv_ref.settings_fields`, held stable during the run) and pulses
``start``. The engine then

* LOAD: accepts input beats on ``i`` (one pixel's ``p_in``-channel tile per beat, row
  major, tiles innermost) into the line buffer until the rows output row ``oy`` needs are
  present (``min(oy·s − p + k, H)`` rows); the first cycle of each load phase only checks
  that condition (one cycle per phase, ``Ho + 1`` phases, the last one drains the rows no
  output needs);
* COMPUTE: the window generator (:class:`~nmaccel.hw.conv.window.WindowGenerator`)
  issues one beat per cycle, looping
  ``ox, ot, ky, kx, it`` (``it`` innermost): input tile ``it`` of tap ``(ky, kx)`` against
  weight word ``((ot·k + ky)·k + kx)·IT + it``; taps outside the image are flagged
  (``sval = 0``: zero level for adder/mul, masked for binary), lanes past C_in are masked;
  a new accumulation group (output pixel × output tile) starts only while fewer than
  ``out_fifo_depth`` groups are in flight or waiting in the FIFO, so the pipeline never
  stalls and back-pressure on ``o`` simply throttles issue;
* DRAIN: waits until every output beat was taken, pulses ``done`` and returns to idle.

Each output beat (per ``oy, ox, ot``) carries ``q`` (requantized / binarized, 8-bit lanes)
and ``v`` (the affine value, ``bias_bits`` lanes).

Ports
    ``i``  In  ``stream.Signature(StructLayout({"data": ArrayLayout(unsigned(8), p_in)}))``
    ``o``  Out ``stream.Signature(StructLayout({"q": ..., "v": ...}))``
    ``layer`` In settings; ``start`` In 1; ``busy``, ``done`` Out 1
    ``wmem_en/addr/data``, ``pmem_en/addr/data`` In  -- parameter loading (while idle)
    ``cyc_total``, ``cyc_active``, ``cyc_load``, ``cyc_stall`` Out 32 -- counters of the
    last run: busy cycles, issue cycles, accepted input beats, cycles issue waited for credit

Timing: issue → memory read (1) → PE array (5) → accumulate (1) → post-process (12) → FIFO
write; ``pipeline_latency`` = 19 (``CONV_ENGINE_LATENCY``). Throughput: ``p_out × p_in`` PE
operations per cycle in COMPUTE; cycle prediction in :func:`nmaccel.model.conv_ref.get_exp_cycles`.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from nmaccel.spec.config import CONV_ENGINE_LATENCY, ConvConfig, clog2
from nmaccel.spec.conv_format import settings_fields

from .line_buffer import LineBuffer
from .pe import PEArray
from .postproc import PostProcess, param_layout
from .window import WindowGenerator

__all__ = ["ConvEngine", "input_layout", "output_layout", "settings_layout"]


def input_layout(cfg: ConvConfig) -> data.StructLayout:
    return data.StructLayout({"data": data.ArrayLayout(unsigned(cfg.data_bits), cfg.p_in)})


def output_layout(cfg: ConvConfig) -> data.StructLayout:
    return data.StructLayout({"q": data.ArrayLayout(unsigned(8), cfg.p_out),
                              "v": data.ArrayLayout(signed(cfg.bias_bits), cfg.p_out)})


def settings_layout(cfg: ConvConfig) -> data.StructLayout:
    return data.StructLayout({name: unsigned(b) for name, b in settings_fields(cfg)})


class ConvEngine(wiring.Component):
    """The conv engine (see the module docstring)."""

    def __init__(self, config: ConvConfig) -> None:
        if not isinstance(config, ConvConfig):
            raise TypeError(f"config must be a ConvConfig, not {type(config).__name__}")
        self.config = config
        self.pipeline_latency = 1 + PEArray.latency + 1 + PostProcess.latency
        assert self.pipeline_latency == CONV_ENGINE_LATENCY
        self.weight_word = data.ArrayLayout(
            data.ArrayLayout(unsigned(config.data_bits), config.p_in), config.p_out)
        self.param_word = data.ArrayLayout(param_layout(config), config.p_out)
        super().__init__({
            "i": In(stream.Signature(input_layout(config))),
            "o": Out(stream.Signature(output_layout(config))),
            "layer": In(settings_layout(config)),
            "start": In(1),
            "busy": Out(1),
            "done": Out(1),
            "wmem_en": In(1), "wmem_addr": In(max(clog2(config.weight_depth), 1)),
            "wmem_data": In(self.weight_word),
            "pmem_en": In(1), "pmem_addr": In(max(clog2(config.max_out_tiles), 1)),
            "pmem_data": In(self.param_word),
            "cyc_total": Out(32), "cyc_active": Out(32), "cyc_load": Out(32),
            "cyc_stall": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        L = self.layer
        po, pi = cfg.p_out, cfg.p_in

        m.submodules.lb = lb = LineBuffer(cfg)
        m.submodules.pe = pe = PEArray(cfg)
        m.submodules.pp = pp = PostProcess(cfg)
        m.submodules.wmem = wmem = Memory(shape=self.weight_word, depth=cfg.weight_depth,
                                          init=[])
        m.submodules.pmem = pmem = Memory(shape=self.param_word, depth=cfg.max_out_tiles,
                                          init=[])
        out_width = output_layout(cfg).size
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=out_width, depth=cfg.out_fifo_depth)

        wwp = wmem.write_port()
        wrp = wmem.read_port(domain="sync")
        pwp = pmem.write_port()
        prp = pmem.read_port(domain="sync")
        m.d.comb += [wwp.en.eq(self.wmem_en), wwp.addr.eq(self.wmem_addr),
                     wwp.data.eq(self.wmem_data),
                     pwp.en.eq(self.pmem_en), pwp.addr.eq(self.pmem_addr),
                     pwp.data.eq(self.pmem_data)]

        # ---------------------------------------------------------------- layer geometry
        hb = clog2(cfg.max_height + 1) + 2
        wb = clog2(cfg.max_width + 1) + 2
        k = Mux(L.k3, 3, 1)
        kk = Signal(range(4))
        m.d.comb += kk.eq(k)
        H, W = L.height, L.width
        ho, wo = Signal(hb), Signal(wb)
        m.d.comb += [ho.eq(((H + 2 * L.pad - kk) >> L.stride2) + 1),
                     wo.eq(((W + 2 * L.pad - kk) >> L.stride2) + 1)]

        # ---------------------------------------------------------------- counters
        m.submodules.win = win = WindowGenerator(cfg)
        m.d.comb += [win.layer.eq(L)]
        oy = Signal(hb)
        rows = Signal(hb)                       # input rows loaded so far
        lx = Signal(wb)
        lit = Signal(range(cfg.max_in_tiles + 1))
        outstanding = Signal(range(cfg.out_fifo_depth + 2))
        cyc_total, cyc_active, cyc_load, cyc_stall = (Signal(32, name=n) for n in
                                                      ("ct", "ca", "cl", "cs"))
        m.d.comb += [self.cyc_total.eq(cyc_total), self.cyc_active.eq(cyc_active),
                     self.cyc_load.eq(cyc_load), self.cyc_stall.eq(cyc_stall)]

        need = Signal(signed(hb + 2))
        m.d.comb += need.eq((oy << L.stride2) - L.pad + kk)
        target = Signal(hb + 1)
        m.d.comb += target.eq(Mux(oy < ho, Mux(need < H, need, H), H))

        issue, first = win.issue, win.first
        popped = Signal()
        m.d.comb += popped.eq(self.o.valid & self.o.ready)
        m.d.comb += [win.oy.eq(oy), win.credit_ok.eq(outstanding < cfg.out_fifo_depth)]
        m.d.sync += outstanding.eq(outstanding + (issue & first) - popped)

        # line buffer write (LOAD) and read (COMPUTE) addresses
        m.d.comb += [lb.w_row.eq(rows), lb.w_x.eq(lx), lb.w_it.eq(lit),
                     lb.w_data.eq(self.i.payload.data),
                     lb.r_row.eq(Mux(win.sval, win.iy, 0)),
                     lb.r_x.eq(Mux(win.sval, win.ix, 0)),
                     lb.r_it.eq(win.it),
                     wrp.addr.eq(win.waddr)]

        with m.FSM(name="ctrl"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.comb += win.clear.eq(1)
                    m.d.sync += [rows.eq(0), oy.eq(0), lx.eq(0), lit.eq(0),
                                 cyc_total.eq(0), cyc_active.eq(0), cyc_load.eq(0),
                                 cyc_stall.eq(0)]
                    m.next = "LOAD"
            with m.State("LOAD"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += cyc_total.eq(cyc_total + 1)
                with m.If(rows >= target):
                    with m.If(oy < ho):
                        m.next = "COMPUTE"
                    with m.Else():
                        m.next = "DRAIN"
                with m.Else():
                    m.d.comb += self.i.ready.eq(1)
                    with m.If(self.i.valid):
                        m.d.comb += lb.w_en.eq(1)
                        m.d.sync += cyc_load.eq(cyc_load + 1)
                        with m.If(lit == L.in_tiles - 1):
                            m.d.sync += lit.eq(0)
                            with m.If(lx == W - 1):
                                m.d.sync += [lx.eq(0), rows.eq(rows + 1)]
                            with m.Else():
                                m.d.sync += lx.eq(lx + 1)
                        with m.Else():
                            m.d.sync += lit.eq(lit + 1)
            with m.State("COMPUTE"):
                m.d.comb += [self.busy.eq(1), win.run.eq(1)]
                m.d.sync += cyc_total.eq(cyc_total + 1)
                with m.If(issue):
                    m.d.sync += cyc_active.eq(cyc_active + 1)
                    with m.If(win.row_last):
                        m.d.sync += oy.eq(oy + 1)
                        m.next = "LOAD"
                with m.Else():
                    m.d.sync += cyc_stall.eq(cyc_stall + 1)
            with m.State("DRAIN"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += cyc_total.eq(cyc_total + 1)
                with m.If(outstanding == 0):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"

        # ---------------------------------------------------------------- stage R (memories)
        r_valid, r_first, r_last, r_sval = Signal(), Signal(), Signal(), Signal()
        r_chan = Signal(pi)
        r_ot = Signal.like(win.ot)
        m.d.sync += [r_valid.eq(issue), r_first.eq(first), r_last.eq(win.last),
                     r_sval.eq(win.sval), r_chan.eq(win.chan), r_ot.eq(win.ot)]
        m.d.comb += [pe.act.eq(lb.r_data), pe.wt.eq(wrp.data), pe.chan.eq(r_chan),
                     pe.sval.eq(r_sval), pe.mode.eq(L.mode), pe.valid.eq(r_valid)]

        # flags travel alongside the PE array
        d_first, d_last, d_ot = r_first, r_last, r_ot
        for j in range(PEArray.latency):
            nf, nl, no = Signal(name=f"first_d{j}"), Signal(name=f"last_d{j}"), \
                Signal.like(win.ot, name=f"ot_d{j}")
            m.d.sync += [nf.eq(d_first), nl.eq(d_last), no.eq(d_ot)]
            d_first, d_last, d_ot = nf, nl, no

        # ---------------------------------------------------------------- accumulate
        cb = cfg.count_bits
        acc0 = [Signal(signed(cfg.acc_bits), name=f"acc0_{o}") for o in range(po)]
        acc3 = [Signal(unsigned(cb), name=f"acc3_{o}") for o in range(po)]
        acc1, acc2 = Signal(unsigned(cb)), Signal(unsigned(cb))
        fin_valid = Signal()
        m.d.sync += fin_valid.eq(pe.o_valid & d_last)
        m.d.comb += prp.addr.eq(d_ot)
        new0 = [Mux(d_first, 0, acc0[o]) + pe.sum0[o] for o in range(po)]
        new3 = [Mux(d_first, 0, acc3[o]) + pe.pw[o] for o in range(po)]
        new1 = Mux(d_first, 0, acc1) + pe.pa
        new2 = Mux(d_first, 0, acc2) + pe.n
        with m.If(pe.o_valid):
            m.d.sync += [acc1.eq(new1), acc2.eq(new2)]
            m.d.sync += [acc0[o].eq(new0[o]) for o in range(po)]
            m.d.sync += [acc3[o].eq(new3[o]) for o in range(po)]
        # the finished sums are the accumulators right after the last beat
        m.d.comb += [pp.s1.eq(acc1), pp.s2.eq(acc2), pp.params.eq(prp.data),
                     pp.valid.eq(fin_valid), pp.binarize.eq(L.binarize),
                     pp.out_bits.eq(L.out_bits), pp.out_signed.eq(L.out_signed)]
        m.d.comb += [pp.s0[o].eq(acc0[o]) for o in range(po)]
        m.d.comb += [pp.s3[o].eq(acc3[o]) for o in range(po)]

        # ---------------------------------------------------------------- output FIFO
        out = Signal(output_layout(cfg))
        m.d.comb += [out.q.eq(pp.q), out.v.eq(pp.v)]
        m.d.comb += [fifo.w_data.eq(out.as_value()), fifo.w_en.eq(pp.o_valid),
                     self.o.valid.eq(fifo.r_rdy), self.o.payload.eq(fifo.r_data),
                     fifo.r_en.eq(self.o.ready)]
        return m
