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

Each output beat (per ``oy, ox, ot`` and lane group) carries ``q`` (requantized /
binarized, 8-bit lanes) and ``v`` (the affine value, ``bias_bits`` lanes) of
``config.out_lanes`` output lanes.

Shared post-processing (``config.post_lanes`` < ``p_out``, for small FPGAs): one
:class:`~nmaccel.hw.conv.postproc.PostProcess` of ``out_lanes`` lanes serves all ``p_out``
lanes. A finished group's sums go into shadow registers, which shift one lane group per
cycle into it over ``R = config.post_cycles`` cycles, with the parameter words (one per lane
group) read beside them; each lane group becomes one output beat. An accumulation group
therefore starts at least ``R`` cycles after the previous one (``gap``), and the credit
counts output beats (``R`` per group). With ``R = 1`` (the default) nothing of this is built.

The weight memory is inferred block RAM, or with ``weight_memory = "spram"`` a
:class:`~nmaccel.hw.common.spram.SinglePortRam` (the iCE40UP5K's SPRAMs): written while idle,
read while computing, so one port serves both. With ``weight_bank_depth`` the block RAM is
split into banks of that many words (``config.weight_banks``), each bank's word registered
right after its read and the bank mux after those registers (on the ECP5 the registers become
the DP16KD output registers: ``boards/bram_outreg.py``); the read latency is unchanged. The
host's weight and parameter writes then land one cycle late (a write register in front of
the memories; the engine is idle while written and reads no weight in the cycle after
``start``).

Ports
    ``i``  In  ``stream.Signature(StructLayout({"data": ArrayLayout(unsigned(8), p_in)}))``
    ``o``  Out ``stream.Signature(StructLayout({"q": ..., "v": ...}))``, the output FIFO's
    head; ``o_level`` Out: the beats in the output FIFO (``0 .. out_fifo_depth``)
    ``layer`` In settings; ``start`` In 1; ``busy``, ``done`` Out 1
    ``wmem_en/addr/data``, ``pmem_en/addr/data`` In  -- parameter loading (while idle)
    ``cyc_total``, ``cyc_active``, ``cyc_load``, ``cyc_stall`` Out 32 -- counters of the
    last run: busy cycles, issue cycles, accepted input beats, cycles issue waited for credit

Timing: issue → memory read (2 with a block-RAM weight memory, its words registered once
more; 1 with SPRAM weights: ``config.read_latency``) → PE array (5) → accumulate (1) →
post-process (13, or 8 with ``post_pipeline = "short"``: ``config.post_latency``) → FIFO
write; ``pipeline_latency`` = 21 (``CONV_ENGINE_LATENCY`` + 1; 15 short with SPRAM weights),
plus ``R`` with shared post-processing (shadow registers 1, lane groups ``R − 1``:
``config.pipeline_latency``).
Throughput: ``p_out × p_in`` PE operations per cycle in COMPUTE (groups of fewer than ``R``
beats wait); cycle prediction in :func:`nmaccel.model.conv_ref.get_exp_cycles`.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from nmaccel.hw.common.ebr import registered_read
from nmaccel.hw.common.spram import SinglePortRam
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
    return data.StructLayout({"q": data.ArrayLayout(unsigned(8), cfg.out_lanes),
                              "v": data.ArrayLayout(signed(cfg.bias_bits), cfg.out_lanes)})


def settings_layout(cfg: ConvConfig) -> data.StructLayout:
    return data.StructLayout({name: unsigned(b) for name, b in settings_fields(cfg)})


class ConvEngine(wiring.Component):
    """The conv engine (see the module docstring)."""

    def __init__(self, config: ConvConfig) -> None:
        if not isinstance(config, ConvConfig):
            raise TypeError(f"config must be a ConvConfig, not {type(config).__name__}")
        self.config = config
        r = config.post_cycles
        self.pipeline_latency = (config.read_latency + PEArray.latency + 1 +
                                 config.post_latency + (r if r > 1 else 0))
        assert 1 + PEArray.latency + 1 + PostProcess.latency == CONV_ENGINE_LATENCY
        assert self.pipeline_latency == config.pipeline_latency
        self.weight_word = data.ArrayLayout(
            data.ArrayLayout(unsigned(config.data_bits), config.p_in), config.p_out)
        self.param_word = data.ArrayLayout(param_layout(config), config.out_lanes)
        super().__init__({
            "i": In(stream.Signature(input_layout(config))),
            "o": Out(stream.Signature(output_layout(config))),
            "o_level": Out(range(config.out_fifo_depth + 1)),
            "layer": In(settings_layout(config)),
            "start": In(1),
            "busy": Out(1),
            "done": Out(1),
            "wmem_en": In(1), "wmem_addr": In(max(clog2(config.weight_depth), 1)),
            "wmem_data": In(self.weight_word),
            "pmem_en": In(1), "pmem_addr": In(max(clog2(config.param_depth), 1)),
            "pmem_data": In(self.param_word),
            "cyc_total": Out(32), "cyc_active": Out(32), "cyc_load": Out(32),
            "cyc_stall": Out(32),
        })

    def _banked_weights(self, m: Module, addr: Signal):
        """The weight memory as ``config.weight_banks`` banks of ``weight_bank_depth`` words
        (the last one shorter when they do not divide ``weight_depth``); returns the word read
        at ``addr`` two cycles earlier. Each bank's word is registered right after its read
        (stage M; the ECP5 flow makes that register the DP16KD's own output register), and
        the bank chosen by the address, registered beside them, picks one after those
        registers."""
        cfg = self.config
        depth = cfg.weight_bank_depth
        low = depth.bit_length() - 1
        assert cfg.read_latency == 2, "banked weights are registered once after the read"
        sel_r = Signal(range(cfg.weight_banks), name="wbank_r")    # bank of the word read
        sel_m = Signal(range(cfg.weight_banks), name="wbank_m")    # ... of the word in stage M
        m.d.sync += [sel_r.eq(addr[low:]), sel_m.eq(sel_r)]
        # the host's writes registered once in front of the banks (each bank's enable its
        # own register): the engine is idle while written, and its first weight read comes
        # cycles after ``start``, which a host sends after its last write
        w_en = [Signal(name=f"wbank{b}_wen") for b in range(cfg.weight_banks)]
        w_addr = Signal.like(self.wmem_addr, name="wbank_waddr", reset_less=True)
        w_data = Signal(self.weight_word, name="wbank_wdata", reset_less=True)
        m.d.sync += [w_en[b].eq(self.wmem_en & (self.wmem_addr[low:] == b))
                     for b in range(cfg.weight_banks)]
        m.d.sync += [w_addr.eq(self.wmem_addr), w_data.eq(self.wmem_data)]
        words = []
        for b in range(cfg.weight_banks):
            # registered_read: no logic between the block RAM and its register for a read
            # and a write of one address in one cycle (the weights are written only while
            # the engine is idle, never read then)
            bank = Memory(shape=self.weight_word, init=[],
                          depth=min(depth, cfg.weight_depth - b * depth))
            m.submodules[f"wmem{b}"] = bank
            wp, rp = bank.write_port(), registered_read(m, bank, f"wbank{b}_r")
            word = Signal(self.weight_word, name=f"wbank{b}_m", reset_less=True)
            m.d.comb += [wp.en.eq(w_en[b]), wp.addr.eq(w_addr[:low]), wp.data.eq(w_data),
                         rp.addr.eq(addr[:low])]
            m.d.sync += word.eq(rp.data)
            words.append(word)
        wt = Signal(self.weight_word, name="wt_m1")
        with m.Switch(sel_m):
            for b, word in enumerate(words):
                with m.Case(b):
                    m.d.comb += wt.eq(word)
        return wt

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        L = self.layer
        po, pi = cfg.p_out, cfg.p_in

        R, ol = cfg.post_cycles, cfg.out_lanes
        m.submodules.lb = lb = LineBuffer(cfg)
        m.submodules.pe = pe = PEArray(cfg)
        m.submodules.pp = pp = PostProcess(cfg, ol)
        assert pp.latency == cfg.post_latency
        m.submodules.pmem = pmem = Memory(shape=self.param_word, depth=cfg.param_depth,
                                          init=[])
        out_width = output_layout(cfg).size
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=out_width, depth=cfg.out_fifo_depth)

        wt_data = Signal(self.weight_word)              # the weight word read for stage R
        if cfg.weight_memory == "spram":
            # one port: written while idle (wmem_en), read at the issue address otherwise
            m.submodules.wmem = wmem = SinglePortRam(self.weight_word.size, cfg.weight_depth)
            wrp_addr = Signal.like(wmem.addr, name="wrp_addr")
            m.d.comb += [wmem.addr.eq(Mux(self.wmem_en, self.wmem_addr, wrp_addr)),
                         wmem.wen.eq(self.wmem_en), wmem.wdata.eq(self.wmem_data),
                         wt_data.eq(wmem.rdata)]
        elif cfg.weight_banks == 1:
            m.submodules.wmem = wmem = Memory(shape=self.weight_word, depth=cfg.weight_depth,
                                              init=[])
            wwp = wmem.write_port()
            wrp = wmem.read_port(domain="sync")
            wrp_addr = wrp.addr
            m.d.comb += [wwp.en.eq(self.wmem_en), wwp.addr.eq(self.wmem_addr),
                         wwp.data.eq(self.wmem_data), wt_data.eq(wrp.data)]
        else:
            wrp_addr = Signal.like(self.wmem_addr, name="wrp_addr")
            wt_data = self._banked_weights(m, wrp_addr)
        pwp = pmem.write_port()
        prp = pmem.read_port(domain="sync")
        if cfg.weight_banks > 1:
            # with banked weights (the ULX3S engine) the parameter writes are registered
            # once too, as the weights' (_banked_weights)
            p_en = Signal(name="pmem_wen")
            p_addr = Signal.like(self.pmem_addr, name="pmem_waddr", reset_less=True)
            p_data = Signal(self.param_word, name="pmem_wdata", reset_less=True)
            m.d.sync += [p_en.eq(self.pmem_en), p_addr.eq(self.pmem_addr),
                         p_data.eq(self.pmem_data)]
            m.d.comb += [pwp.en.eq(p_en), pwp.addr.eq(p_addr), pwp.data.eq(p_data)]
        else:
            m.d.comb += [pwp.en.eq(self.pmem_en), pwp.addr.eq(self.pmem_addr),
                         pwp.data.eq(self.pmem_data)]

        # ---------------------------------------------------------------- layer geometry
        hb = clog2(cfg.max_height + 1) + 2
        wb = clog2(cfg.max_width + 1) + 2
        k = Mux(L.k3, 3, 1)
        kk = Signal(range(4))
        m.d.comb += kk.eq(k)
        H, W = L.height, L.width
        # The output height, registered: the settings are held from the start cycle on, so
        # it is right from the first LOAD cycle, and the settings' arithmetic stays off the
        # control paths (on the iCE40 settings → ho → target → FSM was the critical path).
        ho = Signal(hb)
        m.d.sync += ho.eq(((H + 2 * L.pad - kk) >> L.stride2) + 1)
        lit_end = Signal(range(cfg.max_in_tiles + 1))         # the load counters' last values
        lx_end = Signal(wb)
        m.d.sync += [lit_end.eq(L.in_tiles - 1), lx_end.eq(W - 1)]

        # ---------------------------------------------------------------- counters
        m.submodules.win = win = WindowGenerator(cfg)
        m.d.comb += [win.layer.eq(L)]
        oy = Signal(hb)
        rows = Signal(hb)                       # input rows loaded so far
        lx = Signal(wb)
        lit = Signal(range(cfg.max_in_tiles + 1))
        outstanding = Signal(range(cfg.out_fifo_depth + 2))   # output beats in flight
        cyc_total, cyc_active, cyc_load, cyc_stall = (Signal(32, name=n) for n in
                                                      ("ct", "ca", "cl", "cs"))
        m.d.comb += [self.cyc_total.eq(cyc_total), self.cyc_active.eq(cyc_active),
                     self.cyc_load.eq(cyc_load), self.cyc_stall.eq(cyc_stall)]

        # Rows to load before output row oy: target = min(oy·s − p + k, H) while oy < Ho,
        # H after the last row (the drain phase). Kept in registers that move with oy:
        # need = oy·s − p + k steps by s, and target / more_rows (oy < Ho) are set for the
        # next row when a row ends.
        need = Signal(signed(hb + 2))
        target = Signal(hb + 1)
        more_rows = Signal()
        need_next = Signal(signed(hb + 2))
        m.d.comb += need_next.eq(need + Mux(L.stride2, 2, 1))

        issue, first = win.issue, win.first
        popped = Signal()
        m.d.comb += popped.eq(self.o.valid & self.o.ready)
        # a group may start while the FIFO has room for its R beats and, with shared
        # post-processing, R cycles after the previous group started (gap)
        credit = outstanding <= cfg.out_fifo_depth - R
        if R > 1:
            gap = Signal(range(R))
            with m.If(issue & first):
                m.d.sync += gap.eq(R - 1)
            with m.Elif(gap != 0):
                m.d.sync += gap.eq(gap - 1)
            credit = credit & (gap == 0)
        m.d.comb += [win.oy.eq(oy), win.credit_ok.eq(credit)]
        m.d.sync += outstanding.eq(outstanding + Mux(issue & first, R, 0) - popped)

        # line buffer write (LOAD) and read (COMPUTE) addresses
        m.d.comb += [lb.w_row.eq(rows), lb.w_x.eq(lx), lb.w_it.eq(lit),
                     lb.w_data.eq(self.i.payload.data),
                     # a padded tap reads any word (the PE array zeroes it) where every
                     # address is a word; else the mux keeps it in range (on the iCE40 the
                     # sval compares in front of the read address were the critical path)
                     lb.r_row.eq(win.iy if lb.any_address else Mux(win.sval, win.iy, 0)),
                     lb.r_x.eq(win.ix if lb.any_address else Mux(win.sval, win.ix, 0)),
                     lb.r_it.eq(win.it),
                     wrp_addr.eq(win.waddr)]

        with m.FSM(name="ctrl"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.comb += win.clear.eq(1)
                    m.d.sync += [rows.eq(0), oy.eq(0), lx.eq(0), lit.eq(0),
                                 cyc_total.eq(0), cyc_active.eq(0), cyc_load.eq(0),
                                 cyc_stall.eq(0), need.eq(kk - L.pad),
                                 target.eq(Mux(kk - L.pad < H, kk - L.pad, H)),
                                 more_rows.eq(1)]
                    m.next = "LOAD"
            with m.State("LOAD"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += cyc_total.eq(cyc_total + 1)
                with m.If(rows >= target):
                    with m.If(more_rows):
                        m.next = "COMPUTE"
                    with m.Else():
                        m.next = "DRAIN"
                with m.Else():
                    m.d.comb += self.i.ready.eq(1)
                    with m.If(self.i.valid):
                        m.d.comb += lb.w_en.eq(1)
                        m.d.sync += cyc_load.eq(cyc_load + 1)
                        with m.If(lit == lit_end):
                            m.d.sync += lit.eq(0)
                            with m.If(lx == lx_end):
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
                        last = oy + 1 >= ho
                        m.d.sync += [oy.eq(oy + 1), need.eq(need_next), more_rows.eq(~last),
                                     target.eq(Mux(~last & (need_next < H), need_next, H))]
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
        # stage M (block-RAM weights): the words and their flags registered once more, so no
        # block RAM output crosses the chip to the PE array in one cycle
        # (banked weights: _banked_weights registered them already, per bank)
        act = lb.r_data
        for j in range(1, cfg.read_latency):
            regs = [Signal.like(v, name=f"{v.name}_m{j}") for v in
                    (r_valid, r_first, r_last, r_sval, r_chan, r_ot)]
            act_m = Signal.like(act, name=f"act_m{j}", reset_less=True)
            m.d.sync += [reg.eq(v) for reg, v in zip(regs, (r_valid, r_first, r_last, r_sval,
                                                             r_chan, r_ot))]
            m.d.sync += act_m.eq(act)
            if cfg.weight_banks == 1:
                wt_m = Signal.like(wt_data, name=f"wt_m{j}", reset_less=True)
                m.d.sync += wt_m.eq(wt_data)
                wt_data = wt_m
            r_valid, r_first, r_last, r_sval, r_chan, r_ot = regs
            act = act_m
        m.d.comb += [pe.act.eq(act), pe.wt.eq(wt_data), pe.chan.eq(r_chan),
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
        new0 = [Mux(d_first, 0, acc0[o]) + pe.sum0[o] for o in range(po)]
        new3 = [Mux(d_first, 0, acc3[o]) + pe.pw[o] for o in range(po)]
        new1 = Mux(d_first, 0, acc1) + pe.pa
        new2 = Mux(d_first, 0, acc2) + pe.n
        with m.If(pe.o_valid):
            m.d.sync += [acc1.eq(new1), acc2.eq(new2)]
            m.d.sync += [acc0[o].eq(new0[o]) for o in range(po)]
            m.d.sync += [acc3[o].eq(new3[o]) for o in range(po)]
        m.d.comb += [pp.binarize.eq(L.binarize), pp.out_bits.eq(L.out_bits),
                     pp.out_signed.eq(L.out_signed), pp.params.eq(prp.data)]
        if R == 1:
            # the finished sums are the accumulators right after the last beat
            m.d.comb += [prp.addr.eq(d_ot), pp.s1.eq(acc1), pp.s2.eq(acc2),
                         pp.valid.eq(fin_valid)]
            m.d.comb += [pp.s0[o].eq(acc0[o]) for o in range(po)]
            m.d.comb += [pp.s3[o].eq(acc3[o]) for o in range(po)]
        else:
            # shared post-processing: the finished sums go into shadow registers (the
            # accumulators take the next group's first beat in the next cycle), which shift
            # one lane group per cycle into the post-processing; the parameter word of lane
            # group g (address ot·R + g) is read the cycle before
            sh0 = [Signal(signed(cfg.acc_bits), name=f"sh0_{o}", reset_less=True)
                   for o in range(po)]
            sh3 = [Signal(unsigned(cb), name=f"sh3_{o}", reset_less=True) for o in range(po)]
            sh1 = Signal(unsigned(cb), name="sh1", reset_less=True)
            sh2 = Signal(unsigned(cb), name="sh2", reset_less=True)
            ser_left = Signal(range(R + 1))           # parameter reads left of this group
            paddr = Signal(range(cfg.param_depth))
            ser_valid = Signal()
            with m.If(pe.o_valid & d_last):
                m.d.sync += [ser_left.eq(R), paddr.eq(d_ot * R)]
            with m.Elif(ser_left != 0):
                m.d.sync += [ser_left.eq(ser_left - 1), paddr.eq(paddr + 1)]
            m.d.sync += ser_valid.eq(ser_left != 0)
            with m.If(fin_valid):
                m.d.sync += [sh1.eq(acc1), sh2.eq(acc2)]
                m.d.sync += [sh0[o].eq(acc0[o]) for o in range(po)]
                m.d.sync += [sh3[o].eq(acc3[o]) for o in range(po)]
            with m.Elif(ser_valid):
                m.d.sync += [sh0[o].eq(sh0[o + ol]) for o in range(po - ol)]
                m.d.sync += [sh3[o].eq(sh3[o + ol]) for o in range(po - ol)]
            m.d.comb += [prp.addr.eq(paddr), pp.s1.eq(sh1), pp.s2.eq(sh2),
                         pp.valid.eq(ser_valid)]
            m.d.comb += [pp.s0[o].eq(sh0[o]) for o in range(ol)]
            m.d.comb += [pp.s3[o].eq(sh3[o]) for o in range(ol)]

        # ---------------------------------------------------------------- output FIFO
        out = Signal(output_layout(cfg))
        m.d.comb += [out.q.eq(pp.q), out.v.eq(pp.v)]
        m.d.comb += [fifo.w_data.eq(out.as_value()), fifo.w_en.eq(pp.o_valid),
                     self.o.valid.eq(fifo.r_rdy), self.o.payload.eq(fifo.r_data),
                     fifo.r_en.eq(self.o.ready), self.o_level.eq(fifo.level)]
        return m
