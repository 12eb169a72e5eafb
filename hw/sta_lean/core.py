"""``LeanCore``: the memory-lean STA's sequencer, one-PE GEMM datapath and buffers, around the
time-shared :class:`~nmaccel.hw.sta_lean.vector.SharedVectorUnit`.

It runs programs of the STA instruction set (:mod:`nmaccel.spec.sta_isa`) compiled for a
one-PE :class:`~nmaccel.spec.config.StaConfig` (``rows = cols = 1``; the ``icebreaker``
preset), with the same memory images, and produces the golden model's outputs bit for bit:
GEMM (sparse N:M or dense weights from WBUF, dense × dense with W from ABUF, activations from
ABUF or the softmax probabilities in SBUF; into OBUF, VBUF, ABUF scattered into the ``olay``
windows, ABUF transposed, or the softmax; post-ops GELU and residual add), LAYERNORM and
REQUANT over VBUF, NOP. FETCH (external memory) stops the run with ``opcode``.

Everything happens one output at a time (``rows = cols = 1``: a tile is one feature of one
token), so no command waits for another (``barrier`` and ``wait_sm`` hold by construction)::

    FETCH0..2 LATCH DECODE [PW0..2]
        { TILE PARAM k_steps×MAC DRAIN1 DRAIN2 requant [post] WRITE } NEXT

``TILE`` reads the feature's PBUF entry, ``PARAM`` loads its bias into the accumulator; each
MAC cycle reads one weight word and one activation window, whose products are accumulated a
cycle later, one multiply-accumulator per lane (:class:`~nmaccel.hw.common.mac.MulAcc`: an
SB_MAC16 each on an iCE40; the first starts at the bias, the others at 0); the output is
requantized in the shared unit (then GELU'd or added to its VBUF residual there) and written as
it leaves. A softmax GEMM keeps its scores in a ``max_seq``-entry score buffer, then streams
them through the unit's SOFTMAX row into the SBUF block; a vector command streams each token's
VBUF row (and LayerNorm's PBUF parameters) through the unit and writes VBUF in place and/or the
ABUF copy.
:func:`~nmaccel.spec.lean_timing.program_cycles` counts the same states.

Bad commands stop the run with the error codes of :data:`~nmaccel.spec.sta_isa.ERRORS`:
zero sizes, unknown ``osel``/``dest``/``post``, a softmax GEMM with ``m_tiles != 1`` or a row
length outside ``[1, min(max_seq, n_tiles)]`` (``seq``, also a LayerNorm row longer than
``max_seq``), N:M indices not ascending within a group (``meta``), and every buffer address,
checked as it is formed, before the access (a command can stop after writing part of its
output; the host's :meth:`~nmaccel.spec.sta_isa.GemmCommand.check` refuses such commands first).

Ports (those of :class:`~nmaccel.hw.sta.core.StaCore`: the same host port and address map)
    ``wr`` In stream of 32-bit host writes (buffer writes wait while the core runs), ``rd`` In
    stream of host read requests, ``rd_data`` Out stream of answers; CSR START runs CBUF
    ``0 .. count - 1``, STATUS gives the error code and the command that raised it (START reads
    back the count in ``clog2(cbuf_depth + 1)`` bits: a refused count too big for CBUF reads
    back cut).
    ``busy``, ``done``, ``error`` Out 1.
    The buffers are attributes (``cbuf``, ``wbuf``, ``abuf``, ``pbuf``, ``vbuf``, ``obuf``,
    ``sbuf``; ``amaranth.lib.memory.Memory``) that a testbench loads and reads directly, except
    WBUF/PBUF/CBUF when merged (see :meth:`LeanCore._param_memory`).
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from nmaccel.hw.common.counter import Counter
from nmaccel.hw.common.ebr import registered_read
from nmaccel.hw.common.mac import MulAcc
from nmaccel.hw.common.spram import SinglePortRam, is_ice40
from nmaccel.hw.sta.buffers import buffer_specs
from nmaccel.hw.sta.host_port import HostPort
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
    read_layout,
    write_layout,
)
from nmaccel.hw.sta_lean.vector import SharedVectorUnit
from nmaccel.spec import lean_vector as lv
from nmaccel.spec import sta_isa
from nmaccel.spec.config import SPRAM_DEPTH, StaConfig, clog2

__all__ = ["LeanCore"]

#: The merged parameter memory: 64-bit words (four SPRAMs side by side), a command in
#: ``PM_SLICES`` of them (the core reads ``FETCH_READS``).
PM_WIDTH = 64
PM_SLICES = 4
FETCH_READS = 3
#: The spaces on the one-port parameter memory (merged: one SPRAM-backed word array).
PM_SPACES = ("WBUF", "PBUF", "CBUF")


def _in_pm(space) -> Value:
    """Whether host space number ``space`` is one of :data:`PM_SPACES`."""
    return Cat(*[space == sta_isa.SPACES[name] for name in PM_SPACES]).any()


def _place(base: int, offset) -> Value:
    """``base + offset``: when ``base`` has as many low zero bits as ``offset`` is wide, the
    offset's bits go under the base's (no adder: the merged memory's address paths were the
    iCE40UP5K build's critical path); otherwise an adder."""
    offset = Value.cast(offset)
    if base % (1 << len(offset)):
        return base + offset
    return Cat(offset, Const(base >> len(offset)))

ERR = sta_isa.ERROR_CODES


class LeanCore(wiring.Component):
    """The lean STA core (see the module docstring).

    Parameters
    ----------
    config : StaConfig
        A one-PE configuration (``rows == cols == 1``).
    """

    def __init__(self, config: StaConfig, merged: bool | None = None) -> None:
        self.config = StaConfig.require(config)
        self.merged = merged
        if config.rows != 1 or config.cols != 1:
            raise ValueError(f"the lean STA has one PE: rows and cols must be 1, not "
                             f"{config.rows}x{config.cols}")
        cfg = config
        self.cmd_layout = command_layout(cfg)
        self.param_layout = param_layout(cfg)
        specs = buffer_specs(cfg)                         # the StaCore's words, 32-bit padded
        self.specs = specs
        for name in ("CBUF", "WBUF", "ABUF", "SBUF", "PBUF", "VBUF", "OBUF", "CYCLOG"):
            spec = specs[name]
            setattr(self, name.lower(), Memory(shape=unsigned(spec.width), depth=spec.depth,
                                               init=[]))
        self.scores = Memory(shape=signed(cfg.softmax_in_bits), depth=cfg.max_seq, init=[])
        # the merged parameter memory: WBUF, PBUF, CBUF in one 64-bit single-port RAM
        c0 = -(-(cfg.wbuf_depth + cfg.pbuf_depth) // PM_SLICES) * PM_SLICES
        self.pm_layout = SimpleNamespace(w0=0, p0=cfg.wbuf_depth, c0=c0,
                                         depth=c0 + PM_SLICES * cfg.cbuf_depth)
        if merged:
            self._check_merged()
        super().__init__({
            "wr": In(stream.Signature(write_layout(cfg))),
            "rd": In(stream.Signature(read_layout(cfg))),
            "rd_data": Out(stream.Signature(unsigned(32))),
            "busy": Out(1), "done": Out(1), "error": Out(1),
        })

    def elaborate(self, platform) -> Module:
        cfg = self.config
        m = Module()
        for name in ("abuf", "sbuf", "vbuf", "obuf", "cyclog", "scores"):
            m.submodules[name] = getattr(self, name)
        m.submodules.host = host = HostPort(cfg, word_registers=False)
        m.submodules.vec = vec = SharedVectorUnit(cfg)
        AB, L, n, mm = cfg.act_bits, cfg.lanes, cfg.n, cfg.m
        wb, E = cfg.weight_bits, cfg.weight_bits + cfg.index_bits
        Ws, Wd = cfg.acts_per_cycle, cfg.dense_window
        ratio = sta_isa.dense_ratio(cfg)
        specs = self.specs
        merged = self.merged if self.merged is not None else is_ice40(platform)
        if merged and self.merged is None:                # (an explicit merged=True: checked)
            self._check_merged()
        w_rd, p_rd, c_rd, pm = self._param_memory(m, merged)
        a_rd = registered_read(m, self.abuf, "a_rd")          # the A operand
        aw_rd = registered_read(m, self.abuf, "aw_rd")        # W from ABUF (dense x dense)
        ab_wr = self.abuf.write_port(granularity=AB)
        s_rd = registered_read(m, self.sbuf, "s_rd")
        sb_wr = self.sbuf.write_port(granularity=AB)
        v_rd = registered_read(m, self.vbuf, "v_rd")
        v_wr = self.vbuf.write_port(granularity=specs["VBUF"].granularity)
        o_wr = self.obuf.write_port()
        sc_rd = registered_read(m, self.scores, "sc_rd")
        sc_wr = self.scores.write_port()
        cl_wr = self.cyclog.write_port()
        status = host.status
        code, command = status.code, status.command

        # -- run state ---------------------------------------------------------------------
        # the command count of the last START (CSR START reads it back; a count beyond CBUF
        # is refused with error ``count`` and reads back cut to these bits)
        count = Signal(range(cfg.cbuf_depth + 1))
        count_last = Signal.like(count)                   # count - 1 (see m_last)
        pc = Signal(range(cfg.cbuf_depth + 1))            # the command; also CSR COMMANDS
        cmd = Signal(self.cmd_layout)
        # the run counters (SB_MAC16 accumulators on an iCE40): cycles and MAC cycles since
        # START, and the command's cycles so far, counted from 1 (CYCLOG's value at NEXT)
        m.submodules.cycles = cycles_ctr = Counter(32)
        m.submodules.mac_active = mac_ctr = Counter(32)
        m.submodules.cmd_cycles = cmd_ctr = Counter(32, start=1)
        cycles, mac_active, cmd_cycles = cycles_ctr.value, mac_ctr.value, cmd_ctr.value
        fetch_k = Signal(2)                               # the command slice being read
        assert PM_SLICES == 1 << len(fetch_k)             # pc * PM_SLICES + fetch_k
        m.d.comb += [command.eq(pc), c_rd.addr.eq(Cat(fetch_k, pc) if merged else pc),
                     host.count.eq(count),
                     status.busy.eq(self.busy), status.done.eq(self.done),
                     status.error.eq(self.error), status.ext_ready.eq(1),
                     host.counters.cycles.eq(cycles), host.counters.mac_active.eq(mac_active),
                     host.counters.commands.eq(pc),
                     cl_wr.addr.eq(pc), cl_wr.data.eq(cmd_cycles),
                     cycles_ctr.en.eq(self.busy), cmd_ctr.en.eq(self.busy)]

        # -- tile walk: running pointers (no multiplier), saturating at PTR_MAX: every buffer
        # is at most half as deep, so a saturated address is beyond any buffer (an error)
        PTR_BITS = clog2(max(self.specs[n].depth for n in self.specs)) + 1
        PTR_MAX = (1 << PTR_BITS) - 1

        def sat(a, b):
            """``min(a + b, PTR_MAX)``: a ``PTR_BITS`` adder, the operands' bits above it only
            ORed into the overflow (a full-width sum and a compare would be two carry chains)."""
            a, b = Value.cast(a), Value.cast(b)
            low = a[:PTR_BITS] + b[:PTR_BITS]
            over = Cat(low[PTR_BITS], a[PTR_BITS:], b[PTR_BITS:]).any()
            return Mux(over, PTR_MAX, low[:PTR_BITS])

        ct = Signal(sta_isa.DIM_BITS)                     # token tile (column)
        rt = Signal(sta_isa.DIM_BITS)                     # feature tile (row); vector: feature
        s = Signal(sta_isa.DIM_BITS)                      # MAC step being issued
        w_ptr = Signal(PTR_BITS)                          # WBUF: w_base + rt * k_steps + s
        w_row = Signal(PTR_BITS)                          # ABUF: w_base + rt * w_stride
        a_row = Signal(PTR_BITS)                          # a_base + ct * a_stride
        o_ptr = Signal(PTR_BITS)                          # OBUF: o_base + ct * m_tiles + rt
        o_col = Signal(PTR_BITS)                          # o_base + ct * o_stride
        o_row = Signal(PTR_BITS)                          # o_base + rt * o_stride (transposed)
        p_ptr = Signal(PTR_BITS)
        win, slot = Signal(PTR_BITS), Signal(range(max(Ws, Wd) + 1))      # scatter: rt's
        t_win, t_slot = Signal(PTR_BITS), Signal(range(max(Ws, Wd) + 1))  # transposed: ct's
        k = Signal(sta_isa.DIM_BITS)                      # softmax key / vector feature
        # the loops' last indices (field - 1), registered at DECODE: a decrement before the
        # compare mapped to a LUT ripple on the path to the state
        m_last, n_last, k_last, len_last = (Signal(sta_isa.DIM_BITS, name=f"{x}_last")
                                            for x in ("m", "n", "k", "len"))
        out_win = Mux(cmd.olay, Wd, Ws)                   # window of the output layout
        dense = cmd.mode == Mode.DENSE
        # the MAC step's operand addresses are registers, loaded at PARAM and stepped with s:
        # a_ptr = sat(a_row, chunk), wa_ptr = sat(w_row, chunk), chunk = s (sparse) or
        # s // ratio (dense), so no adder lies between s and the buffers or the range checks
        # (s -> chunk -> sum -> compare -> state was the iCE40UP5K build's critical path)
        a_ptr, wa_ptr = Signal(PTR_BITS), Signal(PTR_BITS)
        phase = Signal(range(max(ratio, 2)))              # s % ratio
        w_addr, a_addr = Signal(PTR_BITS), Signal(PTR_BITS)
        m.d.comb += [w_addr.eq(Mux(cmd.wsrc == WSrc.ABUF, wa_ptr, w_ptr)),
                     a_addr.eq(a_ptr), w_rd.addr.eq(w_addr), aw_rd.addr.eq(w_addr),
                     a_rd.addr.eq(a_addr), s_rd.addr.eq(a_addr)]

        def beyond(x, depth):
            """``x >= depth``: the bits at and above ``log2(depth)`` ORed, for a power of two."""
            if depth & (depth - 1):
                return x >= depth
            return x[clog2(depth):].any()

        # -- the PE: a multiply-accumulator per lane, adding the words read a cycle earlier --
        slice_reg = Signal(range(max(ratio, 2)))
        issue, data_valid = Signal(), Signal()
        m.d.sync += data_valid.eq(issue)
        with m.If(issue):
            m.d.sync += slice_reg.eq(phase)
        a_word = Mux(cmd.asrc == ASrc.SBUF, s_rd.data, a_rd.data)
        a_uns = cmd.asrc == ASrc.SBUF
        window = [Mux(a_uns, a_word[j * AB:(j + 1) * AB].as_unsigned(),
                      a_word[j * AB:(j + 1) * AB].as_signed()) for j in range(Ws)]
        macs = [MulAcc(signed(AB + 1), signed(max(wb, AB)), cfg.acc_bits) for _ in range(L)]
        meta_bad = Signal()                               # sparse indices not ascending
        idxs = [w_rd.data[j * E + wb:(j + 1) * E] for j in range(L)]
        m.d.comb += meta_bad.eq(~dense & data_valid & Cat(
            *[idxs[g * n + i] >= idxs[g * n + i + 1] for g in range(L // n)
              for i in range(n - 1)]).any())
        for j in range(L):
            sparse_a = Signal(signed(AB + 1), name=f"sparse_a{j}")
            with m.Switch(idxs[j]):
                for q in range(mm):
                    with m.Case(q):
                        m.d.comb += sparse_a.eq(window[(j // n) * mm + q])
            dense_a = Signal(signed(AB + 1), name=f"dense_a{j}")
            dense_w = Signal(signed(max(wb, AB)), name=f"dense_w{j}")
            with m.Switch(slice_reg):
                for r in range(ratio):
                    with m.Case(r):
                        i = r * L + j
                        m.d.comb += [
                            dense_a.eq(window[i] if i < Ws else 0),
                            dense_w.eq(Mux(cmd.wsrc == WSrc.ABUF,
                                           aw_rd.data[i * AB:(i + 1) * AB].as_signed()
                                           if i < Ws else 0,
                                           w_rd.data[j * wb:(j + 1) * wb].as_signed()))]
            sparse_w = w_rd.data[j * E:j * E + wb].as_signed()
            m.submodules[f"mac{j}"] = mac = macs[j]
            m.d.comb += [mac.a.eq(Mux(dense, dense_a, sparse_a)),
                         mac.b.eq(Mux(dense, dense_w, sparse_w)), mac.en.eq(data_valid)]
        # bias + the products: the lanes' accumulators are final from DRAIN2 on; the sum is
        # registered there, so no adder precedes the shared unit's input
        acc = Signal(signed(cfg.acc_bits))

        # -- parameters and the shared unit ----------------------------------------------
        post0, post1 = Signal(self.param_layout), Signal(self.param_layout)
        p_data = self.param_layout(p_rd.data[:self.param_layout.size])
        y = Signal(signed(cfg.acc_bits))                  # the requantized output
        m.d.comb += [p_rd.addr.eq(p_ptr), sc_rd.addr.eq(k), sc_wr.addr.eq(ct),
                     sc_wr.data.eq(y)]
        vcmd = vec.cmd.payload
        vin = vec.i.payload
        # the unit's operand: a register selects the source (set a state ahead), so no state
        # decode precedes the unit's input logic; LayerNorm's parameters and the residual
        # are always on the port
        vin_sel = Signal(2)                               # acc, y, VBUF, score
        m.d.comb += [vin.a.eq(Array([acc, y, v_rd.data[:cfg.vec_bits].as_signed(),
                                     sc_rd.data])[vin_sel]),
                     vin.b.eq(v_rd.data[:cfg.vec_bits].as_signed()),
                     vin.gamma.eq(p_data.mult[:cfg.ln_gamma_bits]), vin.beta.eq(p_data.bias)]
        raw = cmd.osel == Osel.ACC                        # acc + bias: mult 1, shift 0

        def send_requant():
            # the feature's PBUF word, still on the read port: p_ptr has not moved since TILE
            # and the merged memory reads PBUF again from DRAIN1 on
            m.d.comb += [vcmd.op.eq(lv.VecOp.REQUANT), vcmd.n.eq(1),
                         vcmd.osel.eq(cmd.osel.as_value()),
                         vcmd.mult.eq(Mux(raw, 1, p_data.mult)),
                         vcmd.shift.eq(Mux(raw, 0, p_data.shift))]

        # the unit's held parameters, from the command's parameter words (fixed while it runs):
        # GELU's clip and constant, ADD's residual multiplier, LAYERNORM's act_bits requant
        vpar = vec.par
        m.d.comb += [vpar.cp.eq(post0.bias[:31]), vpar.clip.eq(post1.bias[:cfg.vec_bits]),
                     vpar.mult2.eq(Mux(cmd.op == Opcode.GEMM,
                                       post0.bias[:cfg.requant_mult_bits], post1.mult)),
                     vpar.shift2.eq(post1.shift)]

        def send_post():
            with m.If(cmd.post == Post.GELU):
                m.d.comb += [vcmd.op.eq(lv.VecOp.GELU), vcmd.n.eq(1), vcmd.osel.eq(Osel.ACT),
                             vcmd.mult.eq(post0.mult), vcmd.shift.eq(post0.shift),
                             vcmd.zero.eq(post1.mult[:AB].as_signed())]
            with m.Else():
                m.d.comb += [vcmd.op.eq(lv.VecOp.ADD), vcmd.n.eq(1), vcmd.osel.eq(Osel.VEC),
                             vcmd.mult.eq(post0.mult), vcmd.shift.eq(post0.shift)]

        # -- output addresses --------------------------------------------------------------
        v_addr = Signal(PTR_BITS)                         # GEMM -> VBUF (and the residual)
        ab_addr = Signal(PTR_BITS)                        # GEMM -> ABUF / ABUF_T
        ab_slot = Signal.like(slot)
        to_t = cmd.dest == Dest.ABUF_T
        m.d.comb += [v_addr.eq(sat(o_col, rt)),
                     ab_addr.eq(sat(Mux(to_t, o_row, o_col), Mux(to_t, t_win, win))),
                     ab_slot.eq(Mux(cmd.dest == Dest.ABUF_T, t_slot, slot)),
                     o_wr.addr.eq(o_ptr), o_wr.data.eq(y), v_wr.data.eq(y[:cfg.vec_bits]),
                     ab_wr.addr.eq(ab_addr), v_wr.addr.eq(v_addr)]
        res_addr = Signal(PTR_BITS)                       # the residual: VBUF at the output's
        with m.Switch(cmd.dest):                          # address (StaCore's rule)
            with m.Case(Dest.OBUF):
                m.d.comb += res_addr.eq(o_ptr)
            with m.Case(Dest.ABUF, Dest.ABUF_T):
                m.d.comb += res_addr.eq(ab_addr)
            with m.Default():
                m.d.comb += res_addr.eq(v_addr)
        for j in range(Ws):
            m.d.comb += ab_wr.data[j * AB:(j + 1) * AB].eq(y[:AB])
        out_bad = Signal()                                # the output's address is beyond
        with m.Switch(cmd.dest):
            with m.Case(Dest.OBUF):
                m.d.comb += out_bad.eq(beyond(o_ptr, cfg.obuf_depth))
            with m.Case(Dest.VBUF):
                m.d.comb += out_bad.eq(beyond(v_addr, cfg.vbuf_depth))
            with m.Case(Dest.ABUF, Dest.ABUF_T):
                m.d.comb += out_bad.eq(beyond(ab_addr, cfg.abuf_depth))
        out_code = Mux(cmd.dest == Dest.OBUF, ERR["obuf"],
                       Mux(cmd.dest == Dest.VBUF, ERR["vbuf"], ERR["abuf"]))

        def step_slot(slot_sig, win_sig, width):
            """The next slot of a window ``width`` slots wide, or the next window's first."""
            with m.If(slot_sig + 1 >= width):
                m.d.sync += [slot_sig.eq(0), win_sig.eq(sat(win_sig, 1))]
            with m.Else():
                m.d.sync += slot_sig.eq(slot_sig + 1)

        def write_output():
            """Write ``y`` to the GEMM's destination; step the output counters."""
            with m.Switch(cmd.dest):
                with m.Case(Dest.OBUF):
                    m.d.comb += o_wr.en.eq(1)
                with m.Case(Dest.VBUF):
                    m.d.comb += v_wr.en.eq(1)
                with m.Case(Dest.ABUF, Dest.ABUF_T):
                    m.d.comb += ab_wr.en.eq(1 << ab_slot)
                with m.Case(Dest.SOFTMAX):
                    m.d.comb += sc_wr.en.eq(1)
            m.d.sync += [o_ptr.eq(sat(o_ptr, 1)), p_ptr.eq(sat(p_ptr, 1)), rt.eq(rt + 1),
                         o_row.eq(sat(o_row, cmd.o_stride)), w_row.eq(sat(w_row, cmd.w_stride))]
            step_slot(slot, win, out_win)
            with m.If(rt == m_last):                  # the token's last feature
                m.d.sync += [rt.eq(0), ct.eq(ct + 1), p_ptr.eq(cmd.p_base), w_ptr.eq(cmd.w_base),
                             w_row.eq(cmd.w_base),
                             a_row.eq(sat(a_row, cmd.a_stride)),
                             o_col.eq(sat(o_col, cmd.o_stride)),
                             o_row.eq(cmd.o_base), win.eq(0), slot.eq(0)]
                step_slot(t_slot, t_win, out_win)
                with m.If(ct == n_last):
                    with m.If(cmd.dest == Dest.SOFTMAX):
                        m.next = "SM_CMD"
                    with m.Else():
                        m.next = "NEXT"
                with m.Else():
                    m.next = "TILE"
            with m.Else():
                m.next = "TILE"

        def stop(code_value):
            m.d.sync += [self.error.eq(1), self.done.eq(1), self.busy.eq(0), code.eq(code_value)]
            m.next = "IDLE"

        # vector commands: the token's row in VBUF, its output in ABUF (olay windows)
        vrow = a_row                                      # a_base + ct * a_stride, as a GEMM's
        # VBUF[row + k]: a register stepped with k (an adder from k fed the range check and
        # the state: the iCE40UP5K build's critical path once the MAC addresses were registered)
        vx_addr = Signal(PTR_BITS)                        # sat(vrow, k) in the vector states
        y2 = Signal(signed(AB))

        with m.FSM():
            with m.State("IDLE"):
                start = host.start
                with m.If(start.valid):
                    m.d.comb += [cycles_ctr.clear.eq(1), mac_ctr.clear.eq(1),
                                 cmd_ctr.clear.eq(1)]
                    m.d.sync += [count.eq(start.payload.count), pc.eq(0),
                                 count_last.eq(start.payload.count - 1),
                                 self.done.eq(0), self.error.eq(0), code.eq(0)]
                    with m.If((start.payload.count == 0)
                              | (start.payload.count > cfg.cbuf_depth)):
                        stop(ERR["count"])
                    with m.Else():
                        m.d.sync += self.busy.eq(1)
                        m.next = "FETCH0"
            # CBUF[pc] is read (merged: in three 64-bit slices) into the command register, which
            # nothing reads until DECODE: DECODE's checks start at registers (from the SPRAM's
            # output they were a 12-level path of the iCE40UP5K build)
            cmd_bits = cmd.as_value()
            for i in range(FETCH_READS):
                with m.State(f"FETCH{i}"):
                    m.d.comb += [fetch_k.eq(i), pm.use_c.eq(1)]
                    if i and merged:
                        m.d.sync += cmd_bits[PM_WIDTH * (i - 1):PM_WIDTH * i].eq(c_rd.data)
                    m.next = f"FETCH{i + 1}" if i < FETCH_READS - 1 else "LATCH"
            with m.State("LATCH"):                       # the last slice (the word: unmerged)
                if merged:
                    m.d.sync += cmd_bits[PM_WIDTH * (FETCH_READS - 1):].eq(c_rd.data)
                else:
                    m.d.sync += cmd_bits.eq(c_rd.data[:self.cmd_layout.size])
                m.next = "DECODE"
            with m.State("DECODE"):
                c = cmd
                m.d.sync += [m_last.eq(c.m_tiles - 1), n_last.eq(c.n_tiles - 1),
                             k_last.eq(c.k_steps - 1), len_last.eq(c.length - 1)]
                m.d.sync += [ct.eq(0), rt.eq(0), s.eq(0), k.eq(0),
                             w_ptr.eq(c.w_base), w_row.eq(c.w_base), a_row.eq(c.a_base),
                             o_ptr.eq(c.o_base), o_col.eq(c.o_base), o_row.eq(c.o_base),
                             win.eq(0), slot.eq(0), t_win.eq(0), t_slot.eq(0)]
                # PBUF: a GEMM's post-op words follow its m_tiles features, LAYERNORM's its
                # length features; the first word read (one adder for every opcode)
                skip = Mux(c.op == Opcode.GEMM, Mux(c.post != Post.NONE, c.m_tiles, 0),
                           Mux(c.op == Opcode.LAYERNORM, c.length, 0))
                m.d.sync += p_ptr.eq(sat(c.p_base, skip))
                big = (c.m_tiles == 0) | (c.n_tiles == 0) | (c.k_steps == 0)
                with m.Switch(c.op):
                    with m.Case(Opcode.NOP):
                        m.next = "NEXT"
                    with m.Case(Opcode.GEMM):
                        is_sm = c.dest == Dest.SOFTMAX
                        with m.If(big):
                            stop(ERR["zero"])
                        with m.Elif(c.osel.as_value() > Osel.SCORE.value):
                            stop(ERR["osel"])
                        with m.Elif((c.dest.as_value() > Dest.SOFTMAX.value)
                                    | (c.post.as_value() > Post.ADD.value)
                                    | (is_sm & (c.post != Post.NONE))):
                            stop(ERR["dest"])
                        with m.Elif(((c.wsrc == WSrc.ABUF) | (c.asrc == ASrc.SBUF))
                                    & (c.mode != Mode.DENSE)):
                            stop(ERR["shape"])
                        with m.Elif(is_sm & ((c.m_tiles != 1) | (c.length == 0)
                                             | (c.length > c.n_tiles)
                                             | (c.length > cfg.max_seq)
                                             | (c.n_tiles > cfg.max_seq))):
                            stop(ERR["seq"])
                        with m.Elif(c.post != Post.NONE):
                            m.next = "PW0"
                        with m.Else():
                            m.next = "TILE"
                    with m.Case(Opcode.LAYERNORM, Opcode.REQUANT):
                        is_ln = c.op == Opcode.LAYERNORM
                        with m.If((c.n_tiles == 0) | (c.length == 0)):
                            stop(ERR["zero"])
                        with m.Elif(is_ln & (c.length > cfg.max_seq)):
                            stop(ERR["seq"])
                        with m.Else():
                            m.next = "PW0"
                    with m.Default():
                        stop(ERR["opcode"])

            # -- GEMM -------------------------------------------------------------------------
            # the command's two parameter words (a GEMM's post-op: GELU reads two, ADD one; a
            # vector command's output: LAYERNORM two, REQUANT one), then its first tile / row
            with m.State("PW0"):
                two = Mux(cmd.op == Opcode.GEMM, cmd.post == Post.GELU, cmd.op == Opcode.LAYERNORM)
                with m.If(beyond(Mux(two, p_ptr + 1, p_ptr), cfg.pbuf_depth)):
                    stop(ERR["pbuf"])
                with m.Else():
                    m.d.sync += p_ptr.eq(sat(p_ptr, 1))
                    m.next = "PW1"
            with m.State("PW1"):
                m.d.sync += [post0.eq(p_data), p_ptr.eq(cmd.p_base)]
                m.next = "PW2"
            with m.State("PW2"):
                m.d.sync += [post1.eq(p_data), k.eq(0), vx_addr.eq(vrow)]
                with m.If(cmd.op == Opcode.GEMM):
                    m.next = "TILE"
                with m.Else():
                    m.next = "V_CMD"
            with m.State("TILE"):                       # PBUF[p_ptr] is read
                with m.If(beyond(p_ptr, cfg.pbuf_depth)):
                    stop(ERR["pbuf"])
                with m.Elif(out_bad):
                    stop(out_code)
                with m.Else():
                    m.next = "PARAM"
            with m.State("PARAM"):
                m.d.comb += [mac.load.eq(1) for mac in macs] + [macs[0].init.eq(p_data.bias)]
                m.d.sync += [s.eq(0), phase.eq(0), a_ptr.eq(a_row), wa_ptr.eq(w_row)]
                m.next = "MAC"
            with m.State("MAC"):                        # one weight word, one window a cycle
                w_abuf = cmd.wsrc == WSrc.ABUF
                with m.If(Mux(w_abuf, beyond(wa_ptr, cfg.abuf_depth),
                              beyond(w_ptr, cfg.wbuf_depth))):
                    stop(Mux(w_abuf, ERR["abuf"], ERR["wbuf"]))
                with m.Elif(Mux(cmd.asrc == ASrc.SBUF, beyond(a_ptr, cfg.sbuf_depth),
                                beyond(a_ptr, cfg.abuf_depth))):
                    stop(ERR["abuf"])
                with m.Elif(meta_bad):
                    stop(ERR["meta"])
                with m.Else():
                    m.d.comb += issue.eq(1)
                    m.d.comb += mac_ctr.en.eq(1)
                    m.d.sync += [s.eq(s + 1), w_ptr.eq(sat(w_ptr, 1))]
                    last_phase = phase == ratio - 1
                    m.d.sync += phase.eq(Mux(last_phase, 0, phase + 1))
                    with m.If(~dense | last_phase):       # the next activation window
                        m.d.sync += [a_ptr.eq(sat(a_ptr, 1)), wa_ptr.eq(sat(wa_ptr, 1))]
                    with m.If(s == k_last):
                        m.next = "DRAIN1"
                m.d.comb += pm.use_w.eq(1)
            with m.State("DRAIN1"):                     # the last words are read, accumulated
                with m.If(meta_bad):
                    stop(ERR["meta"])
                with m.Else():
                    m.next = "DRAIN2"
            with m.State("DRAIN2"):                     # (the array core's pipeline depth)
                m.d.sync += acc.eq(sum(mac.value for mac in macs))
                m.next = "RQ_CMD"
            def through_unit(name, send, sel, done):
                """``name``_CMD/_IN/_OUT: one command and one beat (operand ``sel``) into the
                shared unit, its result into ``y``, then ``done()`` (the next state)."""
                with m.State(f"{name}_CMD"):
                    send()
                    m.d.comb += vec.cmd.valid.eq(1)
                    m.d.sync += vin_sel.eq(sel)
                    with m.If(vec.cmd.ready):
                        m.next = f"{name}_IN"
                with m.State(f"{name}_IN"):
                    m.d.comb += vec.i.valid.eq(1)
                    with m.If(vec.i.ready):
                        m.next = f"{name}_OUT"
                with m.State(f"{name}_OUT"):
                    m.d.comb += vec.o.ready.eq(1)
                    with m.If(vec.o.valid):
                        m.d.sync += y.eq(vec.o.payload.y)
                        done()

            def after_requant():
                with m.If(cmd.post == Post.NONE):
                    m.next = "WRITE"
                with m.Else():
                    m.next = "PO_CMD"

            def to_write():
                m.next = "WRITE"

            through_unit("RQ", send_requant, 0, after_requant)
            # GELU, or the residual add with the VBUF word read meanwhile
            through_unit("PO", send_post, 1, to_write)
            with m.State("WRITE"):
                write_output()

            # -- softmax: the score row through the unit into the SBUF block -----------------
            with m.State("SM_CMD"):
                m.d.comb += [vcmd.op.eq(lv.VecOp.SOFTMAX), vcmd.n.eq(cmd.length),
                             vec.cmd.valid.eq(1)]
                m.d.sync += vin_sel.eq(3)
                with m.If(vec.cmd.ready):
                    m.d.sync += k.eq(0)
                    m.next = "SM_RD"
            with m.State("SM_RD"):                      # scores[k] is read
                m.next = "SM_IN"
            with m.State("SM_IN"):
                m.d.comb += vec.i.valid.eq(1)
                with m.If(vec.i.ready):
                    m.d.sync += k.eq(k + 1)
                    with m.If(k == len_last):
                        m.d.sync += [k.eq(0), win.eq(0), slot.eq(0)]
                        m.next = "SM_OUT"
                    with m.Else():
                        m.next = "SM_RD"
            sm_addr = Signal(PTR_BITS)
            m.d.comb += [sm_addr.eq(sat(cmd.o_base, win)), sb_wr.addr.eq(sm_addr)]
            for j in range(Ws):
                m.d.comb += sb_wr.data[j * AB:(j + 1) * AB].eq(vec.o.payload.y[:AB])
            with m.State("SM_OUT"):                     # probability k -> window k // Wd
                with m.If(beyond(sm_addr, cfg.sbuf_depth)):
                    stop(ERR["abuf"])
                with m.Else():
                    m.d.comb += vec.o.ready.eq(1)
                    with m.If(vec.o.valid):
                        m.d.comb += sb_wr.en.eq(1 << slot)
                        m.d.sync += k.eq(k + 1)
                        step_slot(slot, win, Wd)
                        with m.If(k == len_last):
                            with m.If(slot + 1 >= Wd):
                                m.next = "NEXT"
                            with m.Else():
                                m.next = "SM_PAD"
            with m.State("SM_PAD"):                     # zero the last window's other keys
                m.d.comb += sb_wr.data.eq(0)
                for j in range(Ws):
                    with m.If((j >= slot) & (j < Wd)):
                        m.d.comb += sb_wr.en[j].eq(1)
                m.next = "NEXT"

            # -- LAYERNORM / REQUANT over n_tiles token rows --------------------------------
            is_ln = cmd.op == Opcode.LAYERNORM
            with m.State("V_CMD"):                      # one token row
                m.d.comb += [vcmd.n.eq(Mux(is_ln, cmd.length, 1)),
                             vcmd.mult.eq(post0.mult), vcmd.shift.eq(post0.shift),
                             vcmd.osel.eq(Osel.ACT), vec.cmd.valid.eq(1)]
                m.d.comb += vcmd.op.eq(Mux(is_ln, lv.VecOp.LAYERNORM, lv.VecOp.REQUANT))
                m.d.sync += vin_sel.eq(2)
                with m.If(vec.cmd.ready):
                    m.next = "V_RD"
            with m.State("V_RD"):                       # VBUF[row + k], PBUF[p_base + k]
                with m.If(beyond(vx_addr, cfg.vbuf_depth)):
                    stop(ERR["vbuf"])
                with m.Else():
                    m.next = "V_IN"
            m.d.comb += [v_rd.addr.eq(Mux(cmd.op == Opcode.GEMM, res_addr, vx_addr))]
            with m.State("V_IN"):
                m.d.comb += vec.i.valid.eq(1)
                with m.If(vec.i.ready):
                    with m.If(is_ln):
                        m.d.sync += [k.eq(k + 1), p_ptr.eq(sat(p_ptr, 1)),
                                     vx_addr.eq(sat(vx_addr, 1))]
                        with m.If(k == len_last):
                            m.d.sync += [k.eq(0), win.eq(0), slot.eq(0), vx_addr.eq(vrow)]
                            m.next = "V_OUT"
                        with m.Else():
                            m.next = "V_RD"
                    with m.Else():
                        m.next = "V_OUT"
            ab_v = Signal(PTR_BITS)                     # the ABUF copy's window
            m.d.comb += ab_v.eq(sat(o_col, win))
            with m.State("V_OUT"):
                with m.If((cmd.dest == Dest.ABUF) | ~is_ln):
                    m.d.comb += ab_wr.addr.eq(ab_v)
                m.d.comb += v_wr.addr.eq(vx_addr)
                with m.If(((cmd.dest == Dest.ABUF) | ~is_ln) & (beyond(ab_v, cfg.abuf_depth))):
                    stop(ERR["abuf"])
                with m.Else():
                    m.d.comb += vec.o.ready.eq(1)
                    with m.If(vec.o.valid):
                        m.d.comb += [v_wr.data.eq(vec.o.payload.y[:cfg.vec_bits]), y2.eq(
                            Mux(is_ln, vec.o.payload.y2, vec.o.payload.y))]
                        for j in range(Ws):
                            m.d.comb += ab_wr.data[j * AB:(j + 1) * AB].eq(y2)
                        with m.If(is_ln):
                            m.d.comb += v_wr.en.eq(1)
                        with m.If((cmd.dest == Dest.ABUF) | ~is_ln):
                            m.d.comb += ab_wr.en.eq(1 << slot)
                        step_slot(slot, win, out_win)
                        m.d.sync += [k.eq(k + 1), vx_addr.eq(sat(vx_addr, 1))]
                        with m.If(k == len_last):             # the row is done
                            m.d.sync += [k.eq(0), win.eq(0), slot.eq(0), ct.eq(ct + 1),
                                         vrow.eq(sat(vrow, cmd.a_stride)),
                                         vx_addr.eq(sat(vrow, cmd.a_stride)),
                                         o_col.eq(sat(o_col, cmd.o_stride)), p_ptr.eq(cmd.p_base)]
                            with m.If(ct == n_last):
                                m.next = "NEXT"
                            with m.Else():
                                m.next = "V_CMD"
                        with m.Elif(is_ln):
                            m.next = "V_OUT"
                        with m.Else():
                            m.next = "V_CMD"

            with m.State("NEXT"):
                m.d.comb += cl_wr.en.eq(1)                 # the command's cycles, FETCH..NEXT
                m.d.comb += cmd_ctr.clear.eq(1)
                m.d.sync += pc.eq(pc + 1)
                with m.If(pc == count_last):
                    m.d.sync += [self.busy.eq(0), self.done.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.next = "FETCH0"
        # last: while idle the host's port assignments override the core's
        self._host(m, host, pm, {"ABUF": a_rd, "VBUF": v_rd}, {"ABUF": ab_wr, "VBUF": v_wr},
                   {"OBUF": registered_read(m, self.obuf, "obuf_rd"),
                    "CYCLOG": registered_read(m, self.cyclog, "cyclog_rd")})
        return m

    def _check_merged(self) -> None:
        cfg, lay = self.config, self.pm_layout
        for space, most in (("WBUF", 32), ("PBUF", PM_WIDTH), ("CBUF", FETCH_READS * PM_WIDTH)):
            if self.specs[space].width > most:
                raise ValueError(f"the merged parameter memory holds {space} words of at most "
                                 f"{most} bits, not {self.specs[space].width}")
        if lay.depth > SPRAM_DEPTH:
            raise ValueError(f"the merged parameter memory needs wbuf_depth + pbuf_depth + "
                             f"{PM_SLICES} * cbuf_depth ({lay.depth}) <= {SPRAM_DEPTH} words "
                             f"(StaConfig {cfg.wbuf_depth}, {cfg.pbuf_depth}, {cfg.cbuf_depth})")

    def _param_memory(self, m, merged: bool):
        """WBUF, PBUF and CBUF, each on one port the core reads while it runs and the host
        reads and writes while idle. ``merged``: all three in one 64-bit ``SinglePortRam`` (the
        UP5K's four SPRAMs: WBUF at ``w0``, PBUF at ``p0``, command ``c`` in words ``c0 + 4c
        .. + 2``); otherwise the ``wbuf``/``pbuf``/``cbuf`` memories (the bench loads them
        directly). Returns the core's read views of WBUF, PBUF, CBUF (``addr``, ``data``) and
        the port record ``pm`` (``use_w``, ``use_c``: the core reads WBUF or CBUF this cycle,
        else PBUF)."""
        specs, lay = self.specs, self.pm_layout
        views = {}
        for space in PM_SPACES:
            depth = specs[space].depth * (PM_SLICES if merged and space == "CBUF" else 1)
            width = PM_WIDTH if merged and space == "CBUF" else specs[space].width
            views[space] = SimpleNamespace(addr=Signal(clog2(depth), name=f"{space}_addr"),
                                           data=Signal(width, name=f"{space}_data"))
        pm = SimpleNamespace(use_w=Signal(), use_c=Signal(), merged=merged)
        if merged:
            for name in ("wbuf", "pbuf", "cbuf"):
                getattr(self, name)._MustUse__silence = True
            m.submodules.pm = ram = SinglePortRam(PM_WIDTH, lay.depth, granularity=32)
            pm.addr, pm.wen, pm.wdata = ram.addr, ram.wen, ram.wdata
            w, p, c = views["WBUF"], views["PBUF"], views["CBUF"]
            core_addr = Signal.like(ram.addr)
            with m.If(pm.use_w):
                m.d.comb += core_addr.eq(_place(lay.w0, w.addr))
            with m.Elif(pm.use_c):
                m.d.comb += core_addr.eq(_place(lay.c0, c.addr))
            with m.Else():
                m.d.comb += core_addr.eq(_place(lay.p0, p.addr))
            m.d.comb += ram.addr.eq(core_addr)
            m.d.comb += [w.data.eq(ram.rdata), p.data.eq(ram.rdata), c.data.eq(ram.rdata)]
            pm.rdata = ram.rdata
        else:
            pm.ports = {}
            for space in PM_SPACES:
                mem = getattr(self, space.lower())
                m.submodules[space.lower()] = mem
                wp = mem.write_port(granularity=specs[space].granularity)
                rp = mem.read_port(domain="sync")
                v = views[space]
                addr = Signal.like(v.addr, name=f"{space}_port_addr")
                m.d.comb += [addr.eq(v.addr), wp.addr.eq(addr), rp.addr.eq(addr),
                             rp.en.eq(~wp.en.any()), v.data.eq(rp.data)]
                pm.ports[space] = (addr, wp, rp)
        return views["WBUF"], views["PBUF"], views["CBUF"], pm

    def _host_params(self, m, host, pm) -> None:
        """While idle the host reads and writes WBUF, PBUF and CBUF on their one port (the
        merged memory: at their regions, a command's 32-bit slice ``s`` in word ``c0 + 4c +
        s // 2``)."""
        cfg, lay = self.config, self.pm_layout
        shift = sta_isa.space_shift(cfg)
        rq = self.rd.payload.addr
        rq_space = rq[shift:]
        if not pm.merged:
            for space, (addr, wp, rp) in pm.ports.items():
                hw, hr = getattr(host, f"{space.lower()}_wr"), getattr(host, f"{space.lower()}_rd")
                m.d.comb += hr.data.eq(rp.data)
                with m.If(~self.busy):
                    with m.If(hw.en.any()):
                        m.d.comb += [addr.eq(hw.addr), wp.data.eq(hw.data), wp.en.eq(hw.en)]
                    with m.Else():
                        m.d.comb += addr.eq(hr.addr)
            return
        m.d.comb += [host.wbuf_rd.data.eq(pm.rdata[:32]), host.pbuf_rd.data.eq(pm.rdata),
                     host.cbuf_rd.data.eq(Cat(*[pm.rdata] * FETCH_READS)[:len(host.cbuf_rd.data)])]
        cw = host.cbuf_wr
        c_sub_bits = sta_isa.sub_bits(cfg, "CBUF")
        # the host port writes its 32-bit word into every slice of a space's word: the same
        # two copies for all three spaces, only the enables differ
        m.d.comb += pm.wdata.eq(Cat(host.wbuf_wr.data[:32], host.wbuf_wr.data[:32]))
        # the host's address: a read of these spaces wins (a write then waits: ``_host``'s
        # hold), then a write request; chosen from the requests as they come, not from the
        # accepted enables, with ``busy`` picking last (busy -> accept -> enables -> address
        # was the iCE40UP5K build's critical path, the SPRAMs a long route away)
        wr_addr = self.wr.payload.addr
        wr_space = wr_addr[sta_isa.space_shift(cfg):]
        rd_here = self.rd.valid & _in_pm(rq_space)
        # a CBUF write's first enabled slice (as HostPort enables them: per_slice a slice)
        per_slice = len(cw.en) * 32 // len(cw.data)
        wr_slice = wr_addr[:c_sub_bits] * per_slice
        host_addr, host_wen = Signal.like(pm.addr), Signal.like(pm.wen)
        with m.If(rd_here | ~self.wr.valid):
            with m.If(rq_space == sta_isa.SPACES["WBUF"]):
                m.d.comb += host_addr.eq(_place(lay.w0, host.wbuf_rd.addr))
            with m.Elif(rq_space == sta_isa.SPACES["CBUF"]):
                m.d.comb += host_addr.eq(_place(lay.c0, Cat((rq[:c_sub_bits] >> 1)[:2],
                                                             host.cbuf_rd.addr)))
            with m.Else():
                m.d.comb += host_addr.eq(_place(lay.p0, host.pbuf_rd.addr))
        with m.Elif(wr_space == sta_isa.SPACES["WBUF"]):
            m.d.comb += host_addr.eq(_place(lay.w0, host.wbuf_wr.addr))
        with m.Elif(wr_space == sta_isa.SPACES["CBUF"]):
            m.d.comb += host_addr.eq(_place(lay.c0, Cat((wr_slice >> 1)[:2], cw.addr)))
        with m.Else():
            m.d.comb += host_addr.eq(_place(lay.p0, host.pbuf_wr.addr))
        # the write enables: those the host port accepted
        with m.If(host.wbuf_wr.en.any()):
            m.d.comb += host_wen.eq(0b01)
        with m.Elif(host.pbuf_wr.en.any()):
            m.d.comb += host_wen.eq(host.pbuf_wr.en)
        with m.Elif(cw.en.any()):
            m.d.comb += host_wen.eq(Mux(wr_slice[0], 0b10, 0b01))
        with m.If(~self.busy):
            m.d.comb += [pm.addr.eq(host_addr), pm.wen.eq(host_wen)]

    def _host(self, m, host, pm, shared_rd, shared_wr, host_rd) -> None:
        """The host port on the core's memory ports: while the core is idle the host's reads
        (and writes of ABUF/VBUF) use the ports the core uses while it runs; host writes of
        the buffers wait while it runs (CSR writes pass: START is refused while busy)."""
        for name, port in shared_rd.items():
            hp = getattr(host, f"{name.lower()}_rd")
            m.d.comb += hp.data.eq(port.data)
            with m.If(~self.busy):
                m.d.comb += port.addr.eq(hp.addr)
        for name, port in shared_wr.items():
            hp = getattr(host, f"{name.lower()}_wr")
            with m.If(~self.busy):
                m.d.comb += [port.addr.eq(hp.addr), port.data.eq(hp.data), port.en.eq(hp.en)]
        for name, port in host_rd.items():
            hp = getattr(host, f"{name.lower()}_rd")
            m.d.comb += [port.addr.eq(hp.addr), hp.data.eq(port.data)]
        self._host_params(m, host, pm)
        space = self.wr.payload.addr[sta_isa.space_shift(self.config):]
        held = ((self.busy & (space != sta_isa.SPACES["CSR"]))      # buffers wait while it runs
                | (host.read_accept & _in_pm(space)))   # a read's cycle on a one-port buffer
        m.d.comb += [host.wr.payload.eq(self.wr.payload), host.wr.valid.eq(self.wr.valid & ~held),
                     self.wr.ready.eq(host.wr.ready & ~held), host.write_hold.eq(0)]
        wiring.connect(m, wiring.flipped(self.rd), host.rd)
        wiring.connect(m, host.rd_data, wiring.flipped(self.rd_data))
