"""``SharedVectorUnit``: every vector operation of the STA (requant, GELU, residual add,
LayerNorm, softmax) on one time-shared datapath, for the memory-lean STA.

Where :class:`~nmaccel.hw.sta.core.StaCore` gives each operation its own pipelined lanes
(dozens of wide multipliers), this unit has one 16 × 16-bit unsigned multiplier, one 64-bit
adder path, a shifter that walks 16, 4 or 1 bits a cycle and a one-bit-a-cycle divider and
square root, sequenced by one state machine. Formats, product widths and the exact cycle count
are those of :mod:`nmaccel.spec.lean_vector`; results are bit-exact with the golden models.

Engines (states called with a return point, ``ret``)
    ``MUL``   ``v = add ± ma·mb``: sign-magnitude operands; the first cycle adds the addend
              to ``v`` (cleared, or kept for ADD's residual), then one chunk product is added
              a cycle (subtracted for a negative product: the addend register holds it
              inverted and the adder's carry-in is 1), then the last one.
    ``RSS``   ``v = sat(round_shift(v, shift) + zero)``: walk right by ``shift − 1``, round
              (``v = (v + 1) >> 1``), add the zero point, saturate (``sat`` code): one step
              a cycle, so no path chains two of them.
    ``DIV``   ``dn = dn // dd`` (64 quotient bits, remainder in ``rem``).
    ``ISQRT`` ``dd = isqrt(dn)`` (32 steps, two operand bits each; remainder in ``rem``).
    DIV and ISQRT share one compare-subtract; MUL, the rounding step, the zero point and the
    softmax's bucket sums share the adder on ``v``.

Ports
    ``cmd``  In stream of :attr:`cmd_layout`: ``op`` (:class:`~nmaccel.spec.lean_vector.VecOp`),
             ``n`` (elements, or the row length), ``osel`` (result format of element ops),
             ``mult``/``shift``/``zero``.
    ``par``  In :attr:`par_layout`: ``mult2``/``shift2`` (ADD's second multiplier, LayerNorm's
             ``act_bits`` copy), ``clip``/``cp`` (GELU). Not registered: the source holds them
             from the cycle after its command is taken until ``busy`` falls (a core holds
             them in its own parameter registers; a copy here cost 69 flip-flops).
    ``i``    In stream of :attr:`in_layout`: ``a`` (the operand: accumulator, ``x``, score),
             ``b`` (residual operand), ``gamma``/``beta`` (LayerNorm feature parameters).
    ``o``    Out stream of :attr:`out_layout`: ``y`` and ``y2`` (LayerNorm's ``act_bits`` copy).
    ``busy`` Out: a command is in progress.

Throughput: one command at a time; :func:`~nmaccel.spec.lean_vector.op_cycles` gives its cycles.
A command with ``n = 0`` or an ``op`` outside :class:`~nmaccel.spec.lean_vector.VecOp` is taken
and does nothing (the core's decoder refuses such commands before they get here).
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from nmaccel.hw.common.ebr import registered_read
from nmaccel.hw.common.mac import MulAcc
from nmaccel.spec import lean_vector as lv
from nmaccel.spec.config import StaConfig
from nmaccel.spec.softmax_format import exp2_table
from nmaccel.spec.sta_isa import SHIFT_BITS, Osel

__all__ = ["SharedVectorUnit", "Sat", "cmd_layout", "par_layout"]

W = 64                                                  # datapath width


class Sat:
    """Saturation codes of the RSS engine (the :class:`Osel` formats, then two more)."""
    ACT, VEC, ACC, SCORE = Osel.ACT, Osel.VEC, Osel.ACC, Osel.SCORE
    PROB = 4                                            # unsigned softmax_out_bits
    NONE = 5                                            # no saturation


#: Return points of the engines: the states that continue after a MUL, RSS, DIV or ISQRT.
RETURNS = ("RQ_1", "E_OUT", "AD_1", "AD_2", "GE_1", "GE_2", "GE_3",
           "LS_2", "LS_3", "LD_1", "LD_2", "LD_3", "LO_2", "LO_3", "LO_4", "LO_5", "LO_6",
           "LO_7", "LO_8", "LO_OUT", "SD_1", "SO_3", "SO_OUT")


def cmd_layout(cfg: StaConfig) -> data.StructLayout:
    f = lv.lean_vector_format(cfg)
    return data.StructLayout({
        "op": unsigned(3), "n": unsigned(f.count_bits), "osel": unsigned(2),
        "mult": unsigned(cfg.requant_mult_bits), "shift": unsigned(SHIFT_BITS),
        "zero": signed(cfg.act_bits)})


def par_layout(cfg: StaConfig) -> data.StructLayout:
    """The parameters a command reads while it runs, held by the source (not registered)."""
    return data.StructLayout({
        "mult2": unsigned(cfg.requant_mult_bits), "shift2": unsigned(SHIFT_BITS),
        "clip": unsigned(cfg.vec_bits), "cp": unsigned(cfg.acc_bits - 1)})


def in_layout(cfg: StaConfig) -> data.StructLayout:
    return data.StructLayout({"a": signed(cfg.acc_bits), "b": signed(cfg.vec_bits),
                              "gamma": signed(cfg.ln_gamma_bits), "beta": signed(cfg.acc_bits)})


def out_layout(cfg: StaConfig) -> data.StructLayout:
    return data.StructLayout({"y": signed(cfg.acc_bits), "y2": signed(cfg.act_bits)})


class SharedVectorUnit(wiring.Component):
    """The time-shared vector datapath (see the module docstring).

    Parameters
    ----------
    config : StaConfig
        Formats (``acc_bits``, ``vec_bits``, ``act_bits``, the LayerNorm and softmax formats)
        and the longest row, ``max_seq``.
    """

    def __init__(self, config: StaConfig) -> None:
        self.config = StaConfig.require(config)
        if config.softmax_in_bits > config.vec_bits:
            raise ValueError(f"softmax_in_bits ({config.softmax_in_bits}) must be <= vec_bits "
                             f"({config.vec_bits}): scores share the row buffer")
        self.fmt = lv.lean_vector_format(config)
        self.cmd_layout = cmd_layout(config)
        self.par_layout = par_layout(config)
        self.in_layout = in_layout(config)
        self.out_layout = out_layout(config)
        super().__init__({
            "cmd": In(stream.Signature(self.cmd_layout)),
            "par": In(self.par_layout),
            "i": In(stream.Signature(self.in_layout)),
            "o": Out(stream.Signature(self.out_layout)),
            "busy": Out(1),
        })

    def elaborate(self, platform) -> Module:
        cfg, f = self.config, self.fmt
        m = Module()

        # -- command and operands ----------------------------------------------------------
        cmd = Signal(self.cmd_layout)
        par = self.par
        xa = Signal(signed(cfg.acc_bits))                 # the element's operand
        xb = Signal(signed(cfg.vec_bits))                 # residual operand; LOAD: last beat
        xa16 = xa[:cfg.vec_bits].as_signed()
        idx = Signal(f.count_bits)                        # element / row position
        idx_nxt = Signal(f.count_bits)                    # idx next cycle (row RAM address)
        last = Signal()
        # cmd.n - 1, registered with cmd (a decrement before the compare mapped to a LUT
        # ripple on the path to the state)
        n_last = Signal(f.count_bits)
        m.d.comb += [idx_nxt.eq(idx), last.eq(idx == n_last)]
        m.d.sync += idx.eq(idx_nxt)

        # -- the row buffer: the operand, gamma and beta of each row element ------------------
        row_l = data.StructLayout({"a": signed(cfg.vec_bits), "gamma": signed(cfg.ln_gamma_bits),
                                   "beta": signed(cfg.acc_bits)})
        m.submodules.row = row = Memory(shape=row_l, depth=f.row_depth, init=[])
        row_w = row.write_port()
        row_r = registered_read(m, row, "row_r")   # (LOAD writes it; no read used then)
        m.d.comb += [row_w.addr.eq(idx), row_r.addr.eq(idx_nxt),
                     row_w.data.a.eq(self.i.payload.a), row_w.data.gamma.eq(self.i.payload.gamma),
                     row_w.data.beta.eq(self.i.payload.beta)]
        rx = row_r.data.a

        # -- softmax: exponent table and the per-shift buckets ---------------------------------
        sf = cfg.softmax_in_frac
        g = cfg.softmax_max_shift
        E = cfg.softmax_exp_bits
        # a block RAM (Yosys put the 64-entry table in logic: about 75 LUTs)
        m.submodules.exp = exp = Memory(shape=unsigned(E + 1), depth=1 << sf,
                                        init=[int(t) for t in exp2_table(cfg)],
                                        attrs={"ram_style": "block"})
        exp_r = exp.read_port(domain="sync")
        bucket_bits = E + 1 + f.count_bits
        m.submodules.bucket = bucket = Memory(shape=unsigned(bucket_bits), depth=g + 1, init=[])
        bk_w = bucket.write_port()
        bk_r = bucket.read_port(domain="sync", transparent_for=(bk_w,))
        m_int = Signal(signed(cfg.softmax_in_bits - sf + 1))
        delta = Signal(signed(cfg.softmax_in_bits + 2))
        q_now = Signal(range(g + 1))
        q_reg = Signal(range(g + 1))
        m.d.comb += [delta.eq((m_int << sf) - rx), q_now.eq(delta >> sf),
                     exp_r.addr.eq(delta[:sf]), exp_r.en.eq(1), bk_r.en.eq(1),
                     bk_r.addr.eq(q_now)]

        # -- engines' registers ------------------------------------------------------------
        ma = Signal(f.a_chunks * lv.CHUNK)               # MUL: magnitudes, sign
        mb = Signal(f.b_chunks * lv.CHUNK)
        mna = Signal(range(f.a_chunks))                  # chunks - 1
        mnb = Signal(range(f.b_chunks))
        ci = Signal(range(f.a_chunks))
        cj = Signal(range(f.b_chunks))
        v = Signal(signed(W))                            # result / RSS value
        v_neg = v[W - 1]
        rs_rem = Signal(SHIFT_BITS)
        rs_sat = Signal(3)
        rs_zero = Signal(signed(cfg.act_bits))
        dn = Signal(W)                                   # dividend → quotient; isqrt's operand
        dd = Signal(f.div_bits)                          # divisor; isqrt's root
        rem = Signal(f.div_bits + 2)                     # partial remainder
        steps = Signal(range(lv.DIV_STEPS + 1))
        r2 = Signal(len(rem) + 2)                        # < 2·divisor; isqrt: 4·rem + 3
        trial = Signal(len(rem) + 2)
        take = Signal()
        r2_left = Signal(len(r2) + 1)                    # r2 - trial; its top bit: a borrow
        m.d.comb += [r2_left.eq(r2 - trial), take.eq(~r2_left[-1])]
        ret = Signal(range(len(RETURNS)))

        # row statistics
        # Σx of a row: a multiply-accumulator (an SB_MAC16 on the iCE40: its 23-bit adder in
        # logic cost 46 cells), x · 1 added per LOAD beat, cleared when a command is taken
        m.submodules.sum_x = sum_x = MulAcc(signed(cfg.vec_bits), signed(2),
                                            cfg.vec_bits + f.count_bits)
        sumx = sum_x.value
        m.d.comb += [sum_x.a.eq(self.i.payload.a[:cfg.vec_bits].as_signed()), sum_x.b.eq(1),
                     sum_x.init.eq(0)]
        # the reciprocal (LayerNorm's R, the softmax's omax·2**K // S) is the quotient the
        # divider leaves in dn: nothing writes dn while a row's outputs are formed
        recip = dn[:max(f.recip_mag, f.srecip_mag)]

        # MUL operands: every call names its sources; one selector per operand feeds the
        # registers (a mux per call site would repeat the 64-bit paths)
        # clip − min(|x|, clip) = max(clip − |x|, 0), with clip − |x| = clip + (x or ~x) + (x ≥ 0)
        # (the element ops' operand is the register xa: no path from the input stream reaches
        # the MUL operands, the adder or the saturation)
        clip_a = Signal(signed(cfg.acc_bits + 2))
        a_pos = ~xa[-1]
        m.d.comb += clip_a.eq(par.clip + Mux(a_pos, ~xa, xa) + a_pos)
        clip_u = Signal(cfg.vec_bits)
        m.d.comb += clip_u.eq(Mux(clip_a < 0, 0, clip_a))
        # GELU's polynomial is formed by the square's MUL: 2·cp − sq for x > 0, sq for x < 0
        # (for x = 0 any value will do: it multiplies x)
        gelu_add = Mux(xa > 0, par.cp << 1, 0)
        e = Signal(E + 1)                                 # softmax: T[r] >> q
        m.d.comb += e.eq(Mux(q_reg > E, 0, exp_r.data >> q_reg))
        gm = row_r.data.gamma
        # (value, is negative): each operand's sources are selected first, then one negation
        # forms the magnitude (its low bits: the chunks a call multiplies)
        a_src = {"x": (xa, xa < 0), "b": (xb, xb < 0), "clip_u": (clip_u, 0),
                 "v": (v, v_neg), "rx": (rx, rx < 0), "e": (e, 0)}
        b_src = {"mult": (cmd.mult, 0), "mult2": (par.mult2, 0), "clip_u": (clip_u, 0),
                 "x": (xa, xa < 0), "n": (cmd.n, 0), "v": (v, v_neg), "recip": (recip, 0),
                 "gamma": (gm, gm < 0)}

        def magnitude(sources, sel, width):
            # a source wider than the register (v) is cut: the low bits of |x| are those of
            # the low bits' negation; narrower ones are extended by their own signedness. The
            # sources that are never negative (sign 0) bypass the negation, so no path from
            # them runs through its carry chain (GELU's clip_u leaves an adder already)
            def cut(x):
                x = Value.cast(x)
                return x if len(x) <= width else x[:width]
            may_neg = [not isinstance(n, int) for _, n in sources.values()]
            low_s = Array(cut(x) if m else 0 for (x, _), m in zip(sources.values(), may_neg))[sel]
            low_u = Array(0 if m else cut(x) for (x, _), m in zip(sources.values(), may_neg))[sel]
            neg = Array(Value.cast(n) for _, n in sources.values())[sel]
            return Mux(neg, -low_s, low_s | low_u)[:width]
        # MUL's addend: MUL's first cycle adds it to v (cleared, or kept: "v"); -sumx is
        # added as ~sumx with carry-in 1
        add_src = {"0": 0, "v": 0, "-sumx": ~sumx, "var": dn, "beta": row_r.data.beta,
                   "gelu": gelu_add}
        # a call registers its sources' selects (and sign, sizes, return point); MUL_LD then
        # forms the operands from the registers (a cycle, but no decode of the calling state
        # precedes the operand muxes and the negations)
        a_sel = Signal(range(len(a_src)))
        b_sel = Signal(range(len(b_src)))
        add_sel = Signal(range(len(add_src)))
        mul_go = Signal()
        pp = Signal(2 * lv.CHUNK)
        # the adder on v adds this register, loaded a cycle ahead: the last chunk product in
        # place (MUL), 1 (rounding), the zero point, the bucket read a cycle ago (softmax)
        addend = Signal(signed(W))
        # the adder's carry-in, a register like its operands: MUL's sign (subtracting: carry-in
        # 1) from its second cycle on, cleared wherever addend is loaded for another use (no
        # state decode reaches it)
        borrow = Signal()
        msign = Signal()                                 # MUL: the product is negative
        mul_sign = Signal()
        mul_na = Signal.like(mna)
        mul_nb = Signal.like(mnb)
        mul_ret = Signal.like(ret)
        mul_a, mul_b, mul_add = Signal.like(a_sel), Signal.like(b_sel), Signal.like(add_sel)
        add_val = Signal(signed(W))
        m.d.comb += add_val.eq(Array(Value.cast(x).as_signed() for x in add_src.values())[add_sel])
        with m.If(mul_go):
            m.d.sync += [a_sel.eq(mul_a), b_sel.eq(mul_b), add_sel.eq(mul_add),
                         msign.eq(mul_sign), mna.eq(mul_na), mnb.eq(mul_nb), ret.eq(mul_ret)]

        def load_operands():
            # MUL_LD: the magnitudes; the first MUL cycle adds the addend to v, then a
            # negative product's chunks are subtracted (the addend register holds them
            # inverted, the carry-in adds the 1). The sources still hold the call's values.
            m.d.sync += [ma.eq(magnitude(a_src, a_sel, len(ma))),
                         mb.eq(magnitude(b_src, b_sel, len(mb))), ci.eq(0), cj.eq(0),
                         addend.eq(add_val), borrow.eq(add_sel == list(add_src).index("-sumx"))]
            with m.If(add_sel != list(add_src).index("v")):
                m.d.sync += v.eq(0)

        def call_mul(state_ret, a, b, sign, add, a_mag, b_mag):
            na, nb = lv.chunks(a_mag), lv.chunks(b_mag)
            assert na <= f.a_chunks and nb <= f.b_chunks, (a_mag, b_mag)
            m.d.comb += [mul_go.eq(1), mul_a.eq(list(a_src).index(a)),
                         mul_b.eq(list(b_src).index(b)), mul_add.eq(list(add_src).index(add)),
                         mul_sign.eq(sign), mul_na.eq(na - 1), mul_nb.eq(nb - 1),
                         mul_ret.eq(RETURNS.index(state_ret))]
            m.next = "MUL_LD"

        def call_rss(state_ret, shift, sat, zero=0):
            m.d.sync += [rs_rem.eq(shift - 1), rs_sat.eq(sat), rs_zero.eq(zero),
                         ret.eq(RETURNS.index(state_ret)),
                         addend.eq(Mux(shift == 0, zero, 1)), borrow.eq(0)]
            with m.If(shift == 0):
                m.next = "RSS_ZERO"
            with m.Elif(shift == 1):
                m.next = "RSS_ROUND"
            with m.Else():
                m.next = "RSS_WALK"

        def call_div(state_ret, num, den):
            m.d.sync += [dn.eq(num), dd.eq(den), rem.eq(0), steps.eq(lv.DIV_STEPS - 1),
                         ret.eq(RETURNS.index(state_ret))]
            m.next = "DIV"

        def put(y, y2=0):
            m.d.comb += [self.o.valid.eq(1), self.o.payload.y.eq(y), self.o.payload.y2.eq(y2)]

        def next_element(again_state):
            """After a result is taken: the next element, or back to idle."""
            with m.If(self.o.ready):
                m.d.comb += idx_nxt.eq(idx + 1)
                with m.If(last):
                    m.next = "IDLE"
                with m.Else():
                    m.next = again_state

        # -- the product (registered, at its chunk position), the adder, the saturation ----
        m.d.comb += pp.eq(ma.word_select(ci, lv.CHUNK) * mb.word_select(cj, lv.CHUNK))
        pp_next = Signal(W)
        with m.Switch(ci + cj):
            for k in range(f.a_chunks + f.b_chunks - 1):
                with m.Case(k):
                    m.d.comb += pp_next.eq(pp << (lv.CHUNK * k))
        v_sum = Signal(signed(W))                        # the one adder on v
        m.d.comb += v_sum.eq(v + addend + borrow)
        sat_v = Signal(signed(W))                        # v saturated by rs_sat
        m.d.comb += sat_v.eq(v)
        bounds = {Sat.ACT: (cfg.act_bits, True), Sat.VEC: (cfg.vec_bits, True),
                  Sat.ACC: (cfg.acc_bits, True), Sat.SCORE: (cfg.softmax_in_bits, True),
                  Sat.PROB: (cfg.softmax_out_bits, False)}
        with m.Switch(rs_sat):
            for code, (bits, is_signed) in bounds.items():
                lo = -(1 << (bits - 1)) if is_signed else 0
                hi = (1 << (bits - 1)) - 1 if is_signed else (1 << bits) - 1
                with m.Case(code):
                    # out of range: the bits above the result's are not all copies of its sign
                    # (signed) or not all zero (unsigned; a negative value gives 0)
                    top = v[bits - 1:] if is_signed else v[bits:]
                    inside = (top == 0) | (top == (1 << len(top)) - 1) if is_signed else top == 0
                    with m.If(~inside):
                        m.d.comb += sat_v.eq(Mux(v_neg, lo, hi))

        with m.FSM() as fsm:
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += [cmd.eq(self.cmd.payload), idx.eq(0), dn.eq(0),
                                 n_last.eq(self.cmd.payload.n - 1)]
                    m.d.comb += sum_x.load.eq(1)
                    m.d.comb += idx_nxt.eq(0)
                    with m.If(self.cmd.payload.n != 0):
                        with m.Switch(self.cmd.payload.op):
                            with m.Case(lv.VecOp.LAYERNORM, lv.VecOp.SOFTMAX):
                                m.next = "LOAD"
                            with m.Case(lv.VecOp.REQUANT, lv.VecOp.GELU, lv.VecOp.ADD):
                                m.next = "GET"

            # -- element ops ----------------------------------------------------------------
            with m.State("GET"):                            # the operand into xa, xb
                m.d.comb += self.i.ready.eq(1)
                a = self.i.payload.a
                with m.If(self.i.valid):               # (MUL_LD reads the operand from xa)
                    m.d.sync += [xa.eq(a), xb.eq(self.i.payload.b)]
                    with m.Switch(cmd.op):
                        with m.Case(lv.VecOp.REQUANT):
                            call_mul("RQ_1", "x", "mult", a < 0, "0", f.acc_mag, f.mult_mag)
                        with m.Case(lv.VecOp.ADD):
                            call_mul("AD_1", "x", "mult", a < 0, "0", f.vec_mag, f.mult_mag)
                        with m.Default():                                       # GELU
                            call_mul("GE_1", "clip_u", "clip_u", a > 0, "gelu",
                                     f.vec_mag, f.vec_mag)

            with m.State("RQ_1"):
                call_rss("E_OUT", cmd.shift, cmd.osel, cmd.zero)
            with m.State("E_OUT"):                          # an element op's result
                put(v)
                next_element("GET")

            with m.State("AD_1"):
                call_mul("AD_2", "b", "mult2", xb < 0, "v", f.vec_mag, f.mult_mag)
            with m.State("AD_2"):
                call_rss("E_OUT", cmd.shift, cmd.osel)

            with m.State("GE_1"):                           # poly(x)·x
                call_mul("GE_2", "v", "x", v_neg ^ (xa < 0), "0",
                         f.poly_mag, f.vec_mag)
            with m.State("GE_2"):
                call_mul("GE_3", "v", "mult", v_neg, "0", f.gelu_mag, f.mult_mag)
            with m.State("GE_3"):
                call_rss("E_OUT", cmd.shift, cmd.osel, cmd.zero)

            # -- row ops: load the row ------------------------------------------------------
            with m.State("LOAD"):
                m.d.comb += self.i.ready.eq(1)
                a = self.i.payload.a
                with m.If(self.i.valid):
                    m.d.comb += [row_w.en.eq(1), idx_nxt.eq(idx + 1)]
                    m.d.comb += sum_x.en.eq(1)                # Σx += x
                    # the running max, a beat behind (the beat's compare is off the input path):
                    # xb holds the last beat as the row buffer keeps it, xa the max before it
                    m.d.sync += xb.eq(a[:cfg.vec_bits].as_signed())
                    with m.If((idx == 1) | ((idx > 1) & (xb > xa16))):
                        m.d.sync += xa.eq(xb)
                    with m.If(last):
                        m.d.comb += idx_nxt.eq(0)
                        with m.If(cmd.op == lv.VecOp.LAYERNORM):
                            m.next = "LS_1"
                        with m.Else():
                            m.next = "SM_0"

            # -- LayerNorm: statistics, reciprocal, outputs ----------------------------------
            with m.State("LS_1"):                           # c = d·x − Σx
                call_mul("LS_2", "rx", "n", rx < 0, "-sumx", f.vec_mag, f.count_bits)
            with m.State("LS_2"):                           # var += c² (var in dn)
                call_mul("LS_3", "v", "v", 0, "var", f.c_mag, f.c_mag)
            with m.State("LS_3"):
                m.d.sync += dn.eq(v)
                m.d.comb += idx_nxt.eq(idx + 1)
                with m.If(last):
                    m.d.comb += idx_nxt.eq(0)
                    call_div("LD_1", v, cmd.n)
                with m.Else():
                    m.next = "LS_1"
            with m.State("LD_1"):                           # isqrt(var // d)
                m.d.sync += [rem.eq(0), dd.eq(0),
                             steps.eq(lv.ISQRT_STEPS - 1), ret.eq(RETURNS.index("LD_2"))]
                m.next = "ISQRT"
            with m.State("LD_2"):                           # R = 2**K // max(1, sigma)
                call_div("LD_3", 1 << cfg.ln_recip_frac, Mux(dd == 0, 1, dd))
            with m.State("LD_3"):
                m.next = "LO_1"
            with m.State("LO_1"):                           # c = d·x − Σx
                call_mul("LO_2", "rx", "n", rx < 0, "-sumx", f.vec_mag, f.count_bits)
            with m.State("LO_2"):                           # c·R
                call_mul("LO_3", "v", "recip", v_neg, "0", f.c_mag, f.recip_mag)
            with m.State("LO_3"):                           # n = round_shift(c·R, K − f)
                call_rss("LO_4", cfg.ln_recip_frac - cfg.ln_frac, Sat.NONE)
            with m.State("LO_4"):                           # n·gamma + beta
                call_mul("LO_5", "v", "gamma", v_neg ^ (gm < 0), "beta",
                         f.n_mag, cfg.ln_gamma_bits)
            with m.State("LO_5"):                           # ·mult
                call_mul("LO_6", "v", "mult", v_neg, "0", f.y_mag, f.mult_mag)
            with m.State("LO_6"):
                call_rss("LO_7", cmd.shift, Sat.VEC)
            with m.State("LO_7"):                           # the act_bits copy
                m.d.sync += xa.eq(v)
                call_mul("LO_8", "v", "mult2", v_neg, "0", f.vec_mag, f.mult_mag)
            with m.State("LO_8"):
                call_rss("LO_OUT", par.shift2, Sat.ACT)
            with m.State("LO_OUT"):
                put(xa, v)
                next_element("LO_1")

            # -- softmax: max, bucketed sum, reciprocal, outputs ----------------------------
            with m.State("SM_0"):                           # m_int = ceil(max / 2**F)
                row_max = Mux((cmd.n == 1) | (xb > xa16), xb, xa16)
                m.d.sync += m_int.eq((row_max + ((1 << sf) - 1)) >> sf)
                m.next = "SB_0"
            with m.State("SB_0"):                           # read T[r] and bucket[q]
                m.d.sync += q_reg.eq(q_now)
                m.next = "SB_1"
            with m.State("SB_1"):                           # bucket[q] += T[r]
                m.d.comb += [bk_w.addr.eq(q_reg), bk_w.en.eq(1),
                             bk_w.data.eq(bk_r.data + exp_r.data)]
                m.d.comb += idx_nxt.eq(idx + 1)
                with m.If(last):
                    m.d.comb += idx_nxt.eq(0)
                    m.d.sync += [q_reg.eq(g), v.eq(0)]
                    m.next = "SH_0"
                with m.Else():
                    m.next = "SB_0"
            # the halving walk reads two buckets ahead: addend holds bucket[q_reg]
            with m.State("SH_0"):                           # address bucket[g]
                m.d.comb += bk_r.addr.eq(q_reg)
                m.next = "SH_P"
            with m.State("SH_P"):                           # address bucket[g - 1]
                m.d.comb += bk_r.addr.eq(q_reg - 1)
                m.d.sync += [addend.eq(bk_r.data), borrow.eq(0)]
                m.next = "SH_1"
            with m.State("SH_1"):                           # acc = (acc + A_q) >> 1, clear A_q
                m.d.comb += [bk_w.addr.eq(q_reg), bk_w.en.eq(1), bk_w.data.eq(0),
                             bk_r.addr.eq(q_reg - 2)]
                m.d.sync += [v.eq(v_sum >> 1), q_reg.eq(q_reg - 1), addend.eq(bk_r.data)]
                with m.If(q_reg == 1):
                    m.next = "SH_2"
            with m.State("SH_2"):                           # S_r = acc + A_0; clear A_0
                m.d.comb += [bk_w.addr.eq(0), bk_w.en.eq(1), bk_w.data.eq(0)]
                m.d.sync += v.eq(v_sum)
                m.next = "SH_3"
            with m.State("SH_3"):                           # omax·2**K // S_r
                omax = (1 << cfg.softmax_out_bits) - 1
                call_div("SD_1", omax << cfg.softmax_recip_frac, v)
            with m.State("SD_1"):
                m.next = "SO_1"
            with m.State("SO_1"):                           # read T[r]
                m.d.sync += q_reg.eq(q_now)
                m.next = "SO_2"
            with m.State("SO_2"):                           # e = T[r] >> q; e·recip
                call_mul("SO_3", "e", "recip", 0, "0", f.e_mag, f.srecip_mag)
            with m.State("SO_3"):
                call_rss("SO_OUT", cfg.softmax_recip_frac, Sat.PROB)
            with m.State("SO_OUT"):
                put(v)
                next_element("SO_1")

            # -- engines ----------------------------------------------------------------------
            def go_ret():
                with m.Switch(ret):
                    for k, name in enumerate(RETURNS):
                        with m.Case(k):
                            m.next = name

            with m.State("MUL_LD"):
                load_operands()
                m.next = "MUL"
            with m.State("MUL"):                             # add the last product, form the next
                m.d.sync += [v.eq(v_sum), addend.eq(pp_next ^ msign.replicate(W)),
                             borrow.eq(msign)]
                with m.If(cj == mnb):
                    m.d.sync += [cj.eq(0), ci.eq(ci + 1)]
                    with m.If(ci == mna):
                        m.next = "MUL_FIN"
                with m.Else():
                    m.d.sync += cj.eq(cj + 1)
            with m.State("MUL_FIN"):
                m.d.sync += v.eq(v_sum)
                go_ret()

            with m.State("RSS_WALK"):
                with m.If(rs_rem >= 16):
                    m.d.sync += [v.eq(v >> 16), rs_rem.eq(rs_rem - 16)]
                    with m.If(rs_rem == 16):
                        m.next = "RSS_ROUND"
                with m.Elif(rs_rem >= 4):
                    m.d.sync += [v.eq(v >> 4), rs_rem.eq(rs_rem - 4)]
                    with m.If(rs_rem == 4):
                        m.next = "RSS_ROUND"
                with m.Else():
                    m.d.sync += [v.eq(v >> 1), rs_rem.eq(rs_rem - 1)]
                    with m.If(rs_rem == 1):
                        m.next = "RSS_ROUND"
            with m.State("RSS_ROUND"):
                m.d.sync += [v.eq(v_sum >> 1), addend.eq(rs_zero)]
                m.next = "RSS_ZERO"
            with m.State("RSS_ZERO"):
                m.d.sync += v.eq(v_sum)
                m.next = "RSS_SAT"
            with m.State("RSS_SAT"):
                m.d.sync += v.eq(Mux(rs_sat == Sat.NONE, v, sat_v))
                go_ret()

            # DIV and ISQRT: one digit recurrence, one compare-subtract. DIV shifts one
            # dividend bit into the remainder and tries the divisor; ISQRT shifts two operand
            # bits in and tries 4·root + 1 (the root grows by one bit a step).
            with m.State("DIV"):
                m.d.comb += [r2.eq(Cat(dn[W - 1], rem)), trial.eq(dd)]
                m.d.sync += [rem.eq(Mux(take, r2_left, r2)), dn.eq(Cat(take, dn[:W - 1])),
                             steps.eq(steps - 1)]
                with m.If(steps == 0):
                    go_ret()
            with m.State("ISQRT"):
                m.d.comb += [r2.eq(Cat(dn[W - 2:], rem)), trial.eq(Cat(1, 0, dd))]
                m.d.sync += [rem.eq(Mux(take, r2_left, r2)), dn.eq(dn << 2),
                             dd.eq(Cat(take, dd)), steps.eq(steps - 1)]
                with m.If(steps == 0):
                    go_ret()

        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        return m
