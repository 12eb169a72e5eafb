"""``StaCore``: the STA MAC array, on-chip attention and vector unit, buffers, controller, host port.

Block diagram::

    host wr/rd ─► decode ─► CBUF WBUF ABUF PBUF VBUF                     OBUF CYCLOG ─► host rd
                              │    │  ▲ │   │    │ ▲                         ▲
                 controller ──┴────┤  │ ├───┤    │ │                         │
                 (fetch, decode,   ▼  │ ▼   ▼    │ │                         │
                  checks, sync,  UnifiedMacArray ──► DrainUnit ──► post (GELU | residual add)
                  tiling)            ▲ (A: ABUF|SBUF, W: WBUF|ABUF)        │
                                     │                                     ├─► OBUF / VBUF / ABUF
                                   SBUF ◄─ writer ◄─ StreamingSoftmax ◄─ reader ◄─ SCBUF ◄─┘
                 vector unit: VBUF ─► LayerNormUnit | requant ─► VBUF (in place) + ABUF

Memories and the host address map are those of :mod:`nmaccel.spec.sta_isa`. SCBUF (scores,
two banks) and SBUF (probabilities, two blocks) are internal: attention scores never reach
host-visible memory.

Commands (:mod:`nmaccel.spec.sta_isa`)
    **GEMM**: the array tiles it (token tiles outer, feature tiles inner, ``k_steps`` beats
    per tile). Operands: W from WBUF (weights) or ABUF (dense × dense, ``rows == cols``); A
    from ABUF or SBUF (unsigned probabilities). Drained rows (requantized to ``osel``) go,
    after an optional post-op (GELU; residual add with the VBUF word at the output address),
    to ``dest``: OBUF, VBUF (one feature of a token tile per word), ABUF scattered into the
    windows a later GEMM reads (``olay``), ABUF transposed (features become tokens: Vᵀ), or
    the softmax path (one query tile per command: a score bank, the streaming softmax, the
    probability block at SBUF ``o_base``).
    **LAYERNORM** / **REQUANT**: the vector unit walks ``n_tiles`` token tiles of VBUF.

Synchronisation (flags in the command, set by the compiler)
    ``barrier``: wait until the array and drain are empty (the command reads what an earlier
    command wrote). Post-ops and vector commands always wait. ``wait_sm``: 1 wait until every
    softmax block is written to SBUF, 2 until at most one is outstanding. A softmax GEMM
    waits until its score bank is free.

Controller timing per command: FETCH, DECODE1, DECODE2, CHECK, SYNC (≥ 1 cycle: the waits
above), [PARAM0..2 for post-ops and vector commands], then one beat per cycle, then NEXT. The
last beat of a tile waits while the previous tile's last beat is fewer than ``R`` cycles old
(the drain reads the shadow one row per cycle). After the last command the core waits for the
array, drain, post-op and softmax pipelines to empty. FETCH takes one cycle more only when a
host read is accepted in the very cycle of the START write (the read keeps the CBUF port).
:mod:`nmaccel.model.sta_cycles` follows these rules and is held to the RTL by tests.

Errors (CSR STATUS, codes in :data:`nmaccel.spec.sta_isa.ERRORS`) stop the run.

Ports
    ``wr``      In  stream of ``{addr, data}``: 32-bit host writes (always ready).
    ``rd``      In  stream of ``{addr}``: host read requests; spaces the controller uses
                (CBUF, WBUF, ABUF, PBUF, VBUF) are served only while idle.
    ``rd_data`` Out stream of 32-bit read data, one per request, in order.
    ``busy``, ``done``, ``error`` Out: run state (``done``/``error`` stay until the next START).
"""

from __future__ import annotations

import math

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from nmaccel.hw.common.arith import delay_chain
from nmaccel.spec.config import StaConfig, clog2
from nmaccel.hw.sta.array import UnifiedMacArray
from nmaccel.hw.sta.drain import DrainUnit
from nmaccel.hw.sta.isa import command_layout, padded_bits, param_layout, read_layout, write_layout
from nmaccel.hw.sta.requant import RequantUnit
from nmaccel.hw.sta.softmax import StreamingSoftmax
from nmaccel.hw.sta.vector import GeluLanes, LayerNormUnit, ResidualAddLanes
from nmaccel.spec import sta_isa, sta_timing
from nmaccel.spec.sta_isa import CSR, SPACES

__all__ = ["StaCore"]

_ERR = sta_isa.ERROR_CODES
_FREE, _CLAIMED, _FULL = 0, 1, 2


class StaCore(wiring.Component):
    """The STA engine with buffers and a host port (see the module docstring)."""

    def __init__(self, config: StaConfig) -> None:
        if not isinstance(config, StaConfig):
            raise TypeError(f"config must be a StaConfig, not {type(config).__name__}")
        self.config = config
        self.array_latency = 1 + sta_timing.pe_latency(config)
        #: cycles from a beat's issue (read address) to the array's ``captured`` pulse
        self.capture_delay = self.array_latency + 2
        #: cycles from the drain unit's output to the buffer write (post-op pipeline)
        self.post_latency = sta_timing.post_latency(config)
        super().__init__({
            "wr": In(stream.Signature(write_layout(config))),
            "rd": In(stream.Signature(read_layout(config))),
            "rd_data": Out(stream.Signature(unsigned(32))),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(1),
        })

    # -----------------------------------------------------------------------------------------
    def elaborate(self, platform) -> Module:
        m = Module()
        cfg = self.config
        R, C, L = cfg.rows, cfg.cols, cfg.lanes
        AB, VB, ACC = cfg.act_bits, cfg.vec_bits, cfg.acc_bits
        SS = sta_isa.space_shift(cfg)
        ratio = sta_isa.dense_ratio(cfg)
        Ws, Wd = cfg.acts_per_cycle, cfg.dense_window
        T = -(-cfg.max_seq // C)                      # key tiles per score row
        attention = sta_isa.attention_supported(cfg) is None

        def aw(space):
            return max(clog2(sta_isa.space_depth(cfg, space)), 1)

        # -- memories ------------------------------------------------------------------------
        mems = {}
        for space in ("CBUF", "WBUF", "PBUF", "VBUF"):
            mems[space] = memory.Memory(shape=unsigned(padded_bits(sta_isa.space_width(cfg, space))),
                                        depth=sta_isa.space_depth(cfg, space), init=[])
        abuf_bits = padded_bits(sta_isa.space_width(cfg, "ABUF"))
        mems["ABUF"] = memory.Memory(shape=unsigned(abuf_bits), depth=cfg.abuf_depth, init=[])
        mems["OBUF"] = memory.Memory(shape=unsigned(sta_isa.space_width(cfg, "OBUF")),
                                     depth=cfg.obuf_depth, init=[])
        mems["CYCLOG"] = memory.Memory(shape=unsigned(32), depth=cfg.cbuf_depth, init=[])
        for name, mem in mems.items():
            m.submodules[name.lower()] = mem
        wp = {s: mems[s].write_port(granularity=32) for s in ("CBUF", "WBUF", "PBUF", "VBUF")}
        g_a = math.gcd(AB, 32)                        # ABUF write granularity (host and slots)
        wp["ABUF"] = mems["ABUF"].write_port(granularity=g_a)
        rp = {s: mems[s].read_port() for s in mems}
        rp_w = mems["ABUF"].read_port()               # W operand from ABUF (dense × dense)
        rp_prm = mems["PBUF"].read_port()             # command parameters (post-ops, vector)
        o_wp = mems["OBUF"].write_port()
        log_wp = mems["CYCLOG"].write_port()
        sbuf = memory.Memory(shape=unsigned(abuf_bits), depth=cfg.sbuf_depth, init=[])
        scbuf = memory.Memory(shape=unsigned(C * cfg.softmax_in_bits), depth=cfg.scbuf_depth,
                              init=[])
        m.submodules.sbuf, m.submodules.scbuf = sbuf, scbuf
        sb_wp, sb_rp = sbuf.write_port(granularity=g_a), sbuf.read_port()
        sc_wp, sc_rp = scbuf.write_port(), scbuf.read_port()

        m.submodules.array = array = UnifiedMacArray(cfg)
        tag_layout = data.StructLayout({
            "addr": unsigned(max(aw("OBUF"), aw("ABUF"), aw("VBUF"), clog2(cfg.scbuf_depth), 1)),
            "slot": unsigned(clog2(max(Ws, Wd)) + 1),
            "dest": unsigned(3), "post": unsigned(2), "olay": unsigned(1),
            "lastcmd": unsigned(1), "bank": unsigned(1),
        })
        m.submodules.drain = drain = DrainUnit(cfg, tag_bits=tag_layout.size)

        busy = Signal()
        done = Signal()
        error = Signal()
        err_code = Signal(8)
        err_cmd = Signal(16)
        m.d.comb += [self.busy.eq(busy), self.done.eq(done), self.error.eq(error)]

        # -- counters --------------------------------------------------------------------------
        count = Signal(32)
        c_total, c_active, c_stall = Signal(32), Signal(32), Signal(32)
        c_sparse, c_dense, c_cmds = Signal(32), Signal(32), Signal(32)
        c_smbusy, c_smwait, c_vec, c_barrier = Signal(32), Signal(32), Signal(32), Signal(32)
        cmd_cyc = Signal(32)

        # -- ABUF slot writes (drain post stage and vector unit) ----------------------------------
        slot_en = Signal(C * Ws)                      # one bit per act slot
        slot_data = Signal(C * Ws * AB)
        slot_addr = Signal(aw("ABUF"))
        per_slot = AB // g_a if AB % g_a == 0 else 1

        # -- host write path -------------------------------------------------------------------
        w_space = self.wr.payload.addr[SS:]
        start = Signal()
        m.d.comb += self.wr.ready.eq(1)
        for space, port in wp.items():
            sb = sta_isa.sub_bits(cfg, space)
            entry = self.wr.payload.addr[sb:SS]
            in_range = (entry >> aw(space)) == 0 if SS - sb > aw(space) else Const(1)
            sel = self.wr.valid & (w_space == SPACES[space]) & in_range
            nslices = len(port.en)
            per32 = nslices * 32 // len(port.data)     # enable bits per 32-bit slice
            host_data = Cat(*([self.wr.payload.data] * (len(port.data) // 32)))
            m.d.comb += [port.addr.eq(entry), port.data.eq(host_data)]
            with m.If(sel):
                if nslices == 1:
                    m.d.comb += port.en.eq(1)
                else:
                    m.d.comb += port.en.eq(Const((1 << per32) - 1, nslices)
                                           << (self.wr.payload.addr[:sb] * per32))
        w_entry_csr = self.wr.payload.addr[:SS]
        m.d.comb += start.eq(self.wr.valid & (w_space == SPACES["CSR"])
                             & (w_entry_csr == CSR["START"]) & ~busy)

        # -- controller ------------------------------------------------------------------------
        cmd = Signal(command_layout(cfg))
        pc = Signal(16)
        s = Signal(sta_isa.DIM_BITS)
        rt = Signal(sta_isa.DIM_BITS)
        ct = Signal(sta_isa.DIM_BITS)
        sl = Signal(range(max(ratio, 2)))
        q = Signal(sta_isa.DIM_BITS)
        big = 2 * sta_isa.DIM_BITS + 8
        w_row = Signal(big)
        a_tile = Signal(big)
        o_tile = Signal(big)
        p_tile = Signal(big)
        o_ct = Signal(big)                            # o_base + ct * o_stride
        o_rt = Signal(big)                            # o_base + rt * o_stride (transposed)
        f0 = Signal(big)                              # rt * R
        win0 = Signal(big)                            # scatter window / slot of feature f0
        slot0 = Signal(range(max(Ws, Wd) + 1))
        tw = Signal(big)                              # transposed window / slot of token ct*C
        tslot = Signal(range(max(Ws, Wd) + 1))
        ext = {k: Signal(2 * big, name=f"ext_{k}") for k in
               ("w", "a", "o", "p", "wlim", "alim", "olim")}
        gap = Signal(range(R + 1), init=R)
        issue = Signal()
        issue_last = Signal()
        inflight = Signal()
        post_busy = Signal()
        stall = Signal()
        prm = [Signal(param_layout(cfg), name=f"prm{i}") for i in range(2)]
        is_gemm = cmd.op == sta_isa.Opcode.GEMM
        is_vec = (cmd.op == sta_isa.Opcode.LAYERNORM) | (cmd.op == sta_isa.Opcode.REQUANT)
        is_ln = cmd.op == sta_isa.Opcode.LAYERNORM
        dense = cmd.mode == sta_isa.Mode.DENSE

        # softmax bookkeeping
        bank_state = Array([Signal(2, name=f"bank{i}_state") for i in range(2)])
        bank_sbase = Array([Signal(aw("ABUF") + 2, name=f"bank{i}_sbase") for i in range(2)])
        bank_len = Array([Signal(sta_isa.DIM_BITS, name=f"bank{i}_len") for i in range(2)])
        sm_bank = Signal()                             # bank the next softmax GEMM claims
        cmd_bank = Signal()                            # bank of the current softmax GEMM
        sm_issued, sm_written, sm_started = Signal(16), Signal(16), Signal(16)
        sm_path_busy = Signal()
        bank_full_set = Signal()
        bank_full_idx = Signal()
        bank_free_set = Signal()
        bank_free_idx = Signal()
        sm_written_inc = Signal()
        vec_done = Signal()
        vec_go = Signal()

        # The CBUF is read one state ahead: NEXT (and the start cycle) present the next pc, so
        # the command word is on the read port in FETCH, where it is registered (``cw_r``); the
        # extent products of DECODE1 start from that register, not from the block RAM's output
        # (that path was a ULX3S critical path). ``cb_addr_q`` is the address whose word is on
        # the port; FETCH waits a cycle if it is not pc (a host read of a buffer accepted in
        # the start cycle keeps the port).
        cb_next = Signal.like(pc)
        cb_first = Signal()                      # start cycle: present the first command
        m.d.comb += [cb_next.eq(Mux(cb_first, 0, pc)), rp["CBUF"].addr.eq(cb_next)]
        cb_addr_q = Signal.like(rp["CBUF"].addr)
        m.d.sync += cb_addr_q.eq(rp["CBUF"].addr)
        cmd_word = rp["CBUF"].data[:len(cmd.as_value())]
        cw_r = Signal(len(cmd_word))

        # ``gap``: cycles since the last tile-completing beat was issued (saturates at R).
        with m.If(issue_last):
            m.d.sync += gap.eq(1)
        with m.Elif(gap != R):
            m.d.sync += gap.eq(gap + 1)

        with m.If(busy):
            m.d.sync += [c_total.eq(c_total + 1), cmd_cyc.eq(cmd_cyc + 1)]
            with m.If(sm_path_busy):
                m.d.sync += c_smbusy.eq(c_smbusy + 1)
        with m.If(issue):
            m.d.sync += c_active.eq(c_active + 1)
        with m.If(stall):
            m.d.sync += c_stall.eq(c_stall + 1)

        m.d.comb += array.clear_err.eq(start)
        dims_last_tile = (rt == cmd.m_tiles - 1) & (ct == cmd.n_tiles - 1)
        k_last = s == cmd.k_steps - 1

        # bank state updates (from the post stage, the reader and the controller's claim)
        claim = Signal()
        for b in range(2):
            with m.If(claim & (sm_bank == b)):
                m.d.sync += bank_state[b].eq(_CLAIMED)
            with m.Elif(bank_full_set & (bank_full_idx == b)):
                m.d.sync += bank_state[b].eq(_FULL)
            with m.Elif(bank_free_set & (bank_free_idx == b)):
                m.d.sync += bank_state[b].eq(_FREE)
        with m.If(sm_written_inc):
            m.d.sync += sm_written.eq(sm_written + 1)

        def fail(code):
            m.d.sync += [err_code.eq(code), err_cmd.eq(pc), error.eq(1), busy.eq(0)]
            m.next = "IDLE"

        # Products of the extents (DECODE2), registered in DECODE1 from the registered CBUF word.
        cw = command_layout(cfg)(cw_r)
        xp_next = {
            "w": (cw.m_tiles - 1) * cw.w_stride,
            "mk": cw.m_tiles * cw.k_steps,
            "a": (cw.n_tiles - 1) * cw.a_stride,
            "nm": cw.n_tiles * cw.m_tiles,
            "on": (cw.n_tiles - 1) * cw.o_stride,
            "om": (cw.m_tiles - 1) * cw.o_stride,
        }
        xp = {k: Signal(v.shape(), name=f"xp_{k}") for k, v in xp_next.items()}
        steps = Mux(dense, (cmd.k_steps + (ratio - 1)) // ratio if ratio > 1 else cmd.k_steps,
                    cmd.k_steps)
        w_lay = Mux(cmd.olay, Wd, Ws)

        def by_lay(x):                   # x · w_lay with constant factors (no multiplier)
            return Mux(cmd.olay, x * Wd, x * Ws)
        post_prm = Mux(cmd.post == sta_isa.Post.GELU, 2, Mux(cmd.post == sta_isa.Post.ADD, 1, 0))
        need_barrier = cmd.barrier | (is_gemm & (cmd.post != sta_isa.Post.NONE)) | is_vec
        drain_idle = ~inflight & ~drain.busy & ~post_busy
        sm_diff = sm_issued - sm_written
        sm_ok = Mux(cmd.wait_sm == 1, sm_diff == 0, Mux(cmd.wait_sm == 2, sm_diff <= 1, 1))
        bank_ok = ~(is_gemm & (cmd.dest == sta_isa.Dest.SOFTMAX)) | (bank_state[sm_bank] == _FREE)
        need_params = is_vec | (is_gemm & (cmd.post != sta_isa.Post.NONE))
        prm_addr0 = Mux(is_gemm, cmd.p_base + cmd.m_tiles * R,
                        Mux(is_ln, cmd.p_base + cmd.length, cmd.p_base))
        prm_addr = Signal(aw("PBUF") + 1)
        m.d.comb += rp_prm.addr.eq(prm_addr)

        with m.FSM(name="ctrl"):
            with m.State("IDLE"), m.If(start):
                m.d.sync += [
                    count.eq(self.wr.payload.data), pc.eq(0), done.eq(0), error.eq(0),
                    err_code.eq(0), err_cmd.eq(0), c_total.eq(0), c_active.eq(0),
                    c_stall.eq(0), c_sparse.eq(0), c_dense.eq(0), c_cmds.eq(0),
                    c_smbusy.eq(0), c_smwait.eq(0), c_vec.eq(0), c_barrier.eq(0),
                    cmd_cyc.eq(0), gap.eq(R), busy.eq(1),
                    # softmax path back to its reset state (also after an aborted run)
                    sm_bank.eq(0), sm_issued.eq(0), sm_written.eq(0), sm_started.eq(0),
                    bank_state[0].eq(_FREE), bank_state[1].eq(_FREE),
                ]
                with m.If((self.wr.payload.data == 0)
                          | (self.wr.payload.data > cfg.cbuf_depth)):
                    m.d.sync += [err_code.eq(_ERR["count"]), error.eq(1), busy.eq(0)]
                with m.Else():
                    m.d.comb += cb_first.eq(1)
                    m.next = "FETCH"
            with m.State("FETCH"):              # CBUF word of pc on the port (see cw_r)
                with m.If(array.meta_err):
                    fail(_ERR["meta"])
                with m.Elif(cb_addr_q == pc[:len(cb_addr_q)]):
                    m.d.sync += cw_r.eq(cmd_word)
                    m.next = "DECODE1"
            with m.State("DECODE1"):
                m.d.sync += cmd.as_value().eq(cw_r)
                # The extents' products, one cycle ahead of their sums (timing).
                m.d.sync += [xp[k].eq(v) for k, v in xp_next.items()]
                m.next = "DECODE2"
            with m.State("DECODE2"):            # extents (scaled: entries · window + slots)
                with m.If(is_gemm):
                    m.d.sync += [
                        ext["w"].eq(Mux(cmd.wsrc, cmd.w_base + xp["w"] + steps,
                                        cmd.w_base + xp["mk"])),
                        ext["wlim"].eq(Mux(cmd.wsrc, cfg.abuf_depth, cfg.wbuf_depth)),
                        ext["a"].eq(cmd.a_base + xp["a"] + steps),
                        ext["alim"].eq(Mux(cmd.asrc, cfg.sbuf_depth, cfg.abuf_depth)),
                        ext["p"].eq(cmd.p_base + cmd.m_tiles * R + post_prm),
                    ]
                    with m.Switch(cmd.dest):
                        with m.Case(sta_isa.Dest.OBUF):
                            m.d.sync += [ext["o"].eq(cmd.o_base + xp["nm"] * R),
                                         ext["olim"].eq(cfg.obuf_depth)]
                        with m.Case(sta_isa.Dest.VBUF):
                            m.d.sync += [ext["o"].eq(cmd.o_base + xp["on"] + cmd.m_tiles * R),
                                         ext["olim"].eq(cfg.vbuf_depth)]
                        with m.Case(sta_isa.Dest.ABUF):
                            m.d.sync += [ext["o"].eq(by_lay(cmd.o_base + xp["on"])
                                                     + cmd.m_tiles * R),
                                         ext["olim"].eq(by_lay(cfg.abuf_depth))]
                        with m.Case(sta_isa.Dest.ABUF_T):
                            m.d.sync += [ext["o"].eq(by_lay(cmd.o_base + xp["om"])
                                                     + cmd.n_tiles * C),
                                         ext["olim"].eq(by_lay(cfg.abuf_depth))]
                        with m.Default():       # softmax: the probability block in SBUF
                            m.d.sync += [ext["o"].eq(cmd.o_base * Wd + cmd.length),
                                         ext["olim"].eq(cfg.sbuf_depth * Wd)]
                with m.Else():                  # vector commands
                    m.d.sync += [
                        ext["a"].eq(cmd.a_base + xp["a"] + cmd.length),
                        ext["alim"].eq(cfg.vbuf_depth),
                        ext["o"].eq(by_lay(cmd.o_base + xp["on"]) + cmd.length),
                        ext["olim"].eq(by_lay(cfg.abuf_depth)),
                        ext["p"].eq(cmd.p_base + Mux(is_ln, cmd.length + 2, 1)),
                    ]
                m.next = "CHECK"
            with m.State("CHECK"):
                m.d.sync += [s.eq(0), rt.eq(0), ct.eq(0), sl.eq(0), q.eq(0),
                             w_row.eq(cmd.w_base), a_tile.eq(cmd.a_base),
                             o_tile.eq(cmd.o_base), p_tile.eq(cmd.p_base),
                             o_ct.eq(cmd.o_base), o_rt.eq(cmd.o_base), f0.eq(0), win0.eq(0),
                             slot0.eq(0), tw.eq(0), tslot.eq(0)]
                dest_bad = (cmd.dest > sta_isa.Dest.SOFTMAX) | (cmd.post > sta_isa.Post.ADD) \
                    | ((cmd.post == sta_isa.Post.ADD) & (cmd.dest != sta_isa.Dest.VBUF))
                for olay in (0, 1):
                    if not sta_isa.layout_supported(cfg, olay):
                        dest_bad = dest_bad | ((cmd.dest == sta_isa.Dest.ABUF) & (cmd.olay == olay))
                shape_bad = Const(0)
                if R != C:
                    shape_bad = cmd.wsrc | (cmd.dest == sta_isa.Dest.ABUF_T)
                for olay in (0, 1):
                    if sta_isa.window(cfg, olay) % C:
                        shape_bad = shape_bad | ((cmd.dest == sta_isa.Dest.ABUF_T) & (cmd.olay == olay))
                shape_bad = shape_bad | ((cmd.wsrc | cmd.asrc) & ~dense)
                if not attention:
                    shape_bad = shape_bad | (cmd.dest == sta_isa.Dest.SOFTMAX)
                seq_bad = (cmd.dest == sta_isa.Dest.SOFTMAX) & (
                    (cmd.m_tiles != 1) | (cmd.length == 0) | (cmd.length > cfg.max_seq)
                    | (cmd.length > cmd.n_tiles * C) | (cmd.n_tiles > T))
                with m.If(cmd.op == sta_isa.Opcode.NOP):
                    m.next = "NEXT"
                with m.Elif(is_gemm):
                    with m.If(cmd.osel > sta_isa.Osel.SCORE):
                        fail(_ERR["osel"])
                    with m.Elif(dest_bad):
                        fail(_ERR["dest"])
                    with m.Elif((cmd.m_tiles == 0) | (cmd.n_tiles == 0) | (cmd.k_steps == 0)):
                        fail(_ERR["zero"])
                    with m.Elif(shape_bad):
                        fail(_ERR["shape"])
                    with m.Elif(seq_bad):
                        fail(_ERR["seq"])
                    with m.Elif(ext["w"] > ext["wlim"]):
                        fail(_ERR["wbuf"])
                    with m.Elif(ext["a"] > ext["alim"]):
                        fail(_ERR["abuf"])
                    with m.Elif(ext["o"] > ext["olim"]):
                        fail(Mux(cmd.dest == sta_isa.Dest.VBUF, _ERR["vbuf"],
                                 Mux((cmd.dest == sta_isa.Dest.ABUF) | (cmd.dest == sta_isa.Dest.ABUF_T),
                                     _ERR["abuf"], _ERR["obuf"])))
                    with m.Elif(ext["p"] > cfg.pbuf_depth):
                        fail(_ERR["pbuf"])
                    with m.Else():
                        m.next = "SYNC"
                with m.Elif(is_vec):
                    with m.If(cmd.dest > sta_isa.Dest.ABUF):
                        fail(_ERR["dest"])
                    with m.Elif((cmd.n_tiles == 0) | (cmd.length == 0)):
                        fail(_ERR["zero"])
                    with m.Elif(ext["a"] > ext["alim"]):
                        fail(_ERR["vbuf"])
                    with m.Elif(ext["o"] > ext["olim"]):
                        fail(_ERR["abuf"])
                    with m.Elif(ext["p"] > cfg.pbuf_depth):
                        fail(_ERR["pbuf"])
                    with m.Else():
                        m.next = "SYNC"
                with m.Else():
                    fail(_ERR["opcode"])
            with m.State("SYNC"):
                ok_b = ~need_barrier | drain_idle
                with m.If(array.meta_err):
                    fail(_ERR["meta"])
                with m.Elif(~ok_b):
                    m.d.sync += c_barrier.eq(c_barrier + 1)
                with m.Elif(~sm_ok | ~bank_ok):
                    m.d.sync += c_smwait.eq(c_smwait + 1)
                with m.Else():
                    with m.If(is_gemm & (cmd.dest == sta_isa.Dest.SOFTMAX)):
                        m.d.comb += claim.eq(1)
                        m.d.sync += [cmd_bank.eq(sm_bank), sm_bank.eq(~sm_bank),
                                     sm_issued.eq(sm_issued + 1),
                                     bank_sbase[sm_bank].eq(cmd.o_base),
                                     bank_len[sm_bank].eq(cmd.length)]
                    m.d.comb += prm_addr.eq(prm_addr0)
                    with m.If(need_params):
                        m.next = "PARAM1"
                    with m.Else():
                        m.next = "RUN"
            with m.State("PARAM1"):             # first parameter word arrives
                m.d.comb += prm_addr.eq(prm_addr0 + 1)
                m.d.sync += prm[0].as_value().eq(rp_prm.data[:len(prm[0].as_value())])
                m.next = "PARAM2"
            with m.State("PARAM2"):
                m.d.sync += prm[1].as_value().eq(rp_prm.data[:len(prm[1].as_value())])
                with m.If(is_vec):
                    m.next = "VEC"
                with m.Else():
                    m.next = "RUN"
            with m.State("VEC"):
                m.d.comb += vec_go.eq(1)
                with m.If(vec_done):
                    m.next = "NEXT"
            with m.State("RUN"):
                with m.If(array.meta_err):
                    fail(_ERR["meta"])
                with m.Elif(k_last & (gap != R)):
                    m.d.comb += stall.eq(1)
                with m.Else():
                    m.d.comb += [issue.eq(1), issue_last.eq(k_last)]
                    with m.If(k_last):
                        m.d.sync += [s.eq(0), sl.eq(0), q.eq(0), o_tile.eq(o_tile + R)]
                        with m.If(rt == cmd.m_tiles - 1):
                            m.d.sync += [rt.eq(0), w_row.eq(cmd.w_base), p_tile.eq(cmd.p_base),
                                         ct.eq(ct + 1), a_tile.eq(a_tile + cmd.a_stride),
                                         o_ct.eq(o_ct + cmd.o_stride), o_rt.eq(cmd.o_base),
                                         f0.eq(0), win0.eq(0), slot0.eq(0)]
                            # transposed outputs: the next token tile's window / slot
                            for olay in (0, 1):
                                W = sta_isa.window(cfg, olay)
                                if W % C:
                                    continue
                                with m.If(cmd.olay == olay):
                                    with m.If(tslot + C >= W):
                                        m.d.sync += [tslot.eq(0), tw.eq(tw + 1)]
                                    with m.Else():
                                        m.d.sync += tslot.eq(tslot + C)
                        with m.Else():
                            m.d.sync += [rt.eq(rt + 1),
                                         w_row.eq(w_row + Mux(cmd.wsrc, cmd.w_stride, cmd.k_steps)),
                                         p_tile.eq(p_tile + R), o_rt.eq(o_rt + cmd.o_stride),
                                         f0.eq(f0 + R)]
                            for olay in (0, 1):
                                W = sta_isa.window(cfg, olay)
                                with m.If(cmd.olay == olay):
                                    if W % R == 0:
                                        with m.If(slot0 + R >= W):
                                            m.d.sync += [slot0.eq(0), win0.eq(win0 + 1)]
                                        with m.Else():
                                            m.d.sync += slot0.eq(slot0 + R)
                                    elif R % W == 0:
                                        m.d.sync += win0.eq(win0 + R // W)
                        with m.If(dims_last_tile):
                            m.next = "NEXT"
                    with m.Else():
                        m.d.sync += s.eq(s + 1)
                        with m.If(sl == ratio - 1):
                            m.d.sync += [sl.eq(0), q.eq(q + 1)]
                        with m.Else():
                            m.d.sync += sl.eq(sl + 1)
            with m.State("NEXT"):
                m.d.comb += [log_wp.addr.eq(pc), log_wp.data.eq(cmd_cyc + 1), log_wp.en.eq(1)]
                m.d.comb += cb_next.eq(pc + 1)
                m.d.sync += [pc.eq(pc + 1), cmd_cyc.eq(0), c_cmds.eq(c_cmds + 1)]
                with m.If(is_gemm):
                    with m.If(cmd.mode == sta_isa.Mode.SPARSE):
                        m.d.sync += c_sparse.eq(c_sparse + cmd_cyc + 1)
                    with m.Else():
                        m.d.sync += c_dense.eq(c_dense + cmd_cyc + 1)
                with m.Elif(is_vec):
                    m.d.sync += c_vec.eq(c_vec + cmd_cyc + 1)
                with m.If(pc + 1 == count):
                    m.next = "WAIT"
                with m.Else():
                    m.next = "FETCH"
            with m.State("WAIT"):               # array, drain, post-op and softmax empty out
                with m.If(array.meta_err):
                    fail(_ERR["meta"])
                with m.Elif(drain_idle & (sm_issued == sm_written) & ~sm_path_busy):
                    m.d.sync += [busy.eq(0), done.eq(1)]
                    m.next = "IDLE"

        # -- operand reads and the array ------------------------------------------------------
        a_addr = Mux(dense, a_tile + q, a_tile + s)
        ctrl_w_addr = Mux(cmd.wsrc, w_row + q, w_row + s)
        v1, c1, l1, sl1 = Signal(), Signal(), Signal(), Signal.like(sl)
        m.d.sync += [v1.eq(issue), c1.eq(issue & (s == 0)), l1.eq(issue_last), sl1.eq(sl)]
        # W operand from ABUF: column r's slice becomes row r's dense weight word.
        WW = L * (cfg.weight_bits + cfg.index_bits)
        w_from_a = Signal(len(array.w_word))
        wb = cfg.weight_bits
        for r in range(min(R, C)):
            for j in range(L):
                with m.Switch(sl1):
                    for sli in range(ratio):
                        with m.Case(sli):
                            lo = (r * Ws + sli * L + j) * AB
                            val = rp_w.data[lo:lo + AB].as_signed()
                            m.d.comb += w_from_a[r * WW + j * wb:r * WW + (j + 1) * wb].eq(val)
        a_data = Mux(cmd.asrc, sb_rp.data, rp["ABUF"].data)
        m.d.comb += [
            array.valid.eq(v1), array.clear.eq(c1), array.last.eq(l1), array.mode.eq(dense),
            array.slice.eq(sl1), array.a_unsigned.eq(cmd.asrc),
            array.w_word.eq(Mux(cmd.wsrc, w_from_a, rp["WBUF"].data[:len(array.w_word)])),
            array.a_word.eq(a_data[:len(array.a_word)]),
            rp_w.addr.eq(ctrl_w_addr[:aw("ABUF")]),
            sb_rp.addr.eq(a_addr[:clog2(cfg.sbuf_depth) or 1]),
        ]

        # Tile records travel beside the pipeline to the drain unit.
        tag = Signal(tag_layout)
        scores_addr = Mux(cmd_bank, R * T, 0) + ct
        with m.Switch(cmd.dest):
            with m.Case(sta_isa.Dest.OBUF):
                m.d.comb += tag.addr.eq(o_tile)
            with m.Case(sta_isa.Dest.VBUF):
                m.d.comb += tag.addr.eq(o_ct + f0)
            with m.Case(sta_isa.Dest.ABUF):
                m.d.comb += [tag.addr.eq(o_ct + win0), tag.slot.eq(slot0)]
            with m.Case(sta_isa.Dest.ABUF_T):
                m.d.comb += [tag.addr.eq(o_rt + tw), tag.slot.eq(tslot)]
            with m.Default():
                m.d.comb += tag.addr.eq(scores_addr)
        m.d.comb += [tag.dest.eq(cmd.dest), tag.post.eq(cmd.post), tag.olay.eq(cmd.olay),
                     tag.lastcmd.eq(dims_last_tile), tag.bank.eq(cmd_bank)]
        rec_o, rec_p, rec_s, rec_v = o_tile[:aw("OBUF")], p_tile[:aw("PBUF")], cmd.osel, issue_last
        rec_t = tag.as_value()
        flags = []
        for i in range(self.capture_delay):
            no, np_, ns, nv = (Signal.like(rec_o, name=f"rec_o{i}"), Signal.like(rec_p, name=f"rec_p{i}"),
                               Signal(3, name=f"rec_s{i}"), Signal(name=f"rec_v{i}"))
            nt = Signal(tag_layout.size, name=f"rec_t{i}")
            m.d.sync += [no.eq(rec_o), np_.eq(rec_p), ns.eq(rec_s), nv.eq(rec_v), nt.eq(rec_t)]
            rec_o, rec_p, rec_s, rec_v, rec_t = no, np_, ns, nv, nt
            flags.append(nv)
        any_flag = flags[0]
        for f in flags[1:]:
            any_flag = any_flag | f
        m.d.comb += inflight.eq(any_flag)
        vec_p_addr = Signal(aw("PBUF"))
        vec_active = Signal()
        m.d.comb += [
            drain.start.eq(array.captured),
            drain.o_addr.eq(rec_o), drain.p_addr.eq(rec_p), drain.osel.eq(rec_s),
            drain.tag.eq(rec_t),
            array.row_sel.eq(drain.row_sel), drain.row.eq(array.row),
            drain.p_data.eq(rp["PBUF"].data[:len(drain.p_data.as_value())]),
        ]

        # -- post stage: per-row addresses, residual read, GELU / add, buffer writes ----------------
        d_tag = Signal(tag_layout)
        m.d.comb += d_tag.as_value().eq(drain.o_tag)
        d_row = drain.o_row
        d_valid = drain.o_wr_en
        d_addr = Signal(len(d_tag.addr) + 1)
        d_slot = Signal(len(d_tag.slot))
        with m.Switch(d_tag.dest):
            with m.Case(sta_isa.Dest.ABUF):
                for olay in (0, 1):
                    W = sta_isa.window(cfg, olay)
                    with m.If(d_tag.olay == olay):
                        if W % R == 0:
                            m.d.comb += [d_addr.eq(d_tag.addr), d_slot.eq(d_tag.slot + d_row)]
                        elif R % W == 0:
                            with m.Switch(d_row):
                                for r in range(R):
                                    with m.Case(r):
                                        m.d.comb += [d_addr.eq(d_tag.addr + r // W),
                                                     d_slot.eq(r % W)]
            with m.Case(sta_isa.Dest.ABUF_T):
                m.d.comb += [d_addr.eq(d_tag.addr), d_slot.eq(d_tag.slot)]
            with m.Case(sta_isa.Dest.SOFTMAX):
                m.d.comb += d_addr.eq(d_tag.addr + d_row * T)
            with m.Default():
                m.d.comb += d_addr.eq(d_tag.addr + d_row)
        vbuf_drain_addr = d_addr

        # E1: registered row, VBUF word (residual operand) arrives.
        e_lanes = Signal(data.ArrayLayout(signed(ACC), C))
        e_tag, e_row, e_addr, e_slot, e_valid = (Signal(tag_layout), Signal(range(R)),
                                                 Signal.like(d_addr), Signal.like(d_slot), Signal())
        m.d.sync += [e_lanes.eq(drain.o_lanes), e_tag.eq(d_tag), e_row.eq(d_row), e_addr.eq(d_addr),
                     e_slot.eq(d_slot), e_valid.eq(d_valid)]
        m.submodules.gelu = gelu = GeluLanes(cfg, C)
        m.submodules.radd = radd = ResidualAddLanes(cfg, C)
        vb_data = rp["VBUF"].data
        for c in range(C):
            m.d.comb += [gelu.x[c].eq(e_lanes[c]), radd.a[c].eq(e_lanes[c]),
                         radd.b[c].eq(vb_data[c * VB:(c + 1) * VB].as_signed())]
        zero_bits = prm[1].mult[:AB]
        m.d.comb += [
            gelu.valid.eq(e_valid & (e_tag.post == sta_isa.Post.GELU)),
            gelu.clip.eq(prm[1].bias[:VB]), gelu.cp.eq(prm[0].bias[:31]), gelu.mult.eq(prm[0].mult),
            gelu.shift.eq(prm[0].shift), gelu.zero.eq(zero_bits.as_signed()),
            radd.valid.eq(e_valid & (e_tag.post == sta_isa.Post.ADD)),
            radd.mult_a.eq(prm[0].mult), radd.mult_b.eq(prm[0].bias[:cfg.requant_mult_bits]),
            radd.shift.eq(prm[0].shift),
        ]
        lp = self.post_latency - 1

        def delay(sig, n, name):                 # sig n cycles later (registers reset)
            return delay_chain(m, sig, n, name, reset_less=False)[-1]

        z_lanes = delay(e_lanes, lp, "lanes")
        z_tag = delay(e_tag, lp, "tag")
        z_row = delay(e_row, lp, "row")
        z_addr = delay(e_addr, lp, "addr")
        z_slot = delay(e_slot, lp, "slot")
        z_valid = delay(e_valid, lp, "valid")
        g_out = delay(gelu.o, lp - gelu.latency, "gelu_o")
        a_out = delay(radd.o, lp - radd.latency, "radd_o")
        # post_busy: any valid row between the drain output and the write stage
        busy_bits = [d_valid, e_valid]
        vsig = e_valid
        for i in range(lp):
            nxt = Signal(name=f"pb{i}")
            m.d.sync += nxt.eq(vsig)
            busy_bits.append(nxt)
            vsig = nxt
        pbusy = busy_bits[0]
        for b in busy_bits[1:]:
            pbusy = pbusy | b
        m.d.comb += post_busy.eq(pbusy)

        out_lanes = Signal(data.ArrayLayout(signed(ACC), C))
        with m.Switch(z_tag.post):
            with m.Case(sta_isa.Post.GELU):
                for c in range(C):
                    m.d.comb += out_lanes[c].eq(g_out[c])
            with m.Case(sta_isa.Post.ADD):
                for c in range(C):
                    m.d.comb += out_lanes[c].eq(a_out[c])
            with m.Default():
                m.d.comb += out_lanes.eq(z_lanes)
        m.d.comb += [o_wp.addr.eq(z_addr), o_wp.en.eq(z_valid & (z_tag.dest == sta_isa.Dest.OBUF))]
        for c in range(C):
            m.d.comb += o_wp.data[c * ACC:(c + 1) * ACC].eq(out_lanes[c])
        # VBUF writes: drain post stage or the vector unit
        vec_vb_addr, vec_vb_data, vec_vb_en = Signal(aw("VBUF")), Signal(C * VB), Signal()
        post_vb_en = z_valid & (z_tag.dest == sta_isa.Dest.VBUF)
        with m.If(post_vb_en | vec_vb_en):
            m.d.comb += [wp["VBUF"].addr.eq(Mux(post_vb_en, z_addr, vec_vb_addr)),
                         wp["VBUF"].en.eq(-1)]
            for c in range(C):
                m.d.comb += wp["VBUF"].data[c * VB:(c + 1) * VB].eq(
                    Mux(post_vb_en, out_lanes[c][:VB], vec_vb_data[c * VB:(c + 1) * VB]))
        # Scores into the bank
        m.d.comb += [sc_wp.addr.eq(z_addr), sc_wp.en.eq(z_valid & (z_tag.dest == sta_isa.Dest.SOFTMAX))]
        for c in range(C):
            m.d.comb += sc_wp.data[c * cfg.softmax_in_bits:(c + 1) * cfg.softmax_in_bits].eq(
                out_lanes[c][:cfg.softmax_in_bits])
        m.d.comb += [
            bank_full_set.eq(z_valid & (z_tag.dest == sta_isa.Dest.SOFTMAX) & z_tag.lastcmd
                             & (z_row == R - 1)),
            bank_full_idx.eq(z_tag.bank),
        ]
        # ABUF slot writes from the post stage
        post_a_en = Signal(C * Ws)
        post_a_data = Signal(C * Ws * AB)
        with m.If(z_valid & (z_tag.dest == sta_isa.Dest.ABUF)):
            for c in range(C):
                for j in range(Ws):
                    m.d.comb += [post_a_data[(c * Ws + j) * AB:(c * Ws + j + 1) * AB].eq(out_lanes[c][:AB]),
                                 post_a_en[c * Ws + j].eq(z_slot == j)]
        with m.Elif(z_valid & (z_tag.dest == sta_isa.Dest.ABUF_T)):
            for c in range(C):
                for j in range(Ws):
                    m.d.comb += post_a_data[(c * Ws + j) * AB:(c * Ws + j + 1) * AB].eq(
                        out_lanes[j % C][:AB])
                    in_win = (j >= z_slot) & (j < z_slot + C)
                    m.d.comb += post_a_en[c * Ws + j].eq((z_row == c) & in_win)
        vec_a_en, vec_a_data, vec_a_addr = Signal(C * Ws), Signal(C * Ws * AB), Signal(aw("ABUF"))
        with m.If(post_a_en.any()):
            m.d.comb += [slot_en.eq(post_a_en), slot_data.eq(post_a_data), slot_addr.eq(z_addr)]
        with m.Else():
            m.d.comb += [slot_en.eq(vec_a_en), slot_data.eq(vec_a_data), slot_addr.eq(vec_a_addr)]
        with m.If(slot_en.any()):
            m.d.comb += [wp["ABUF"].addr.eq(slot_addr),
                         wp["ABUF"].data.eq(slot_data),
                         wp["ABUF"].en.eq(Cat(*[Mux(slot_en[i], (1 << per_slot) - 1, 0)[:per_slot]
                                                for i in range(C * Ws)]))]

        # -- softmax path: bank reader → StreamingSoftmax → SBUF writer ---------------------------------
        if attention:
            B = cfg.softmax_in_bits
            m.submodules.softmax = smx = StreamingSoftmax(cfg)
            m.submodules.sm_fifo = smf = fifo.SyncFIFO(width=C * B + clog2(C + 1) + 1, depth=4)
            rd_active, rb = Signal(), Signal()
            rr = Signal(range(R))
            rbeat = Signal(range(T + 1))
            rem = Signal(sta_isa.DIM_BITS)
            rd_issue = Signal()
            rd_pend = Signal()
            rd_cnt = Signal(clog2(C + 1))
            rd_last = Signal()
            p_cnt, p_last = Signal.like(rd_cnt), Signal()
            m.d.comb += [sc_rp.addr.eq(Mux(rb, R * T, 0) + rr * T + rbeat),
                         rd_cnt.eq(Mux(rem >= C, C, rem)), rd_last.eq(rem <= C)]
            m.d.sync += [rd_pend.eq(rd_issue), p_cnt.eq(rd_cnt), p_last.eq(rd_last)]
            m.d.comb += [smf.w_en.eq(rd_pend), smf.w_data.eq(Cat(sc_rp.data, p_cnt, p_last))]
            start_ok = ~rd_active & (bank_state[rb] == _FULL) & ((sm_started - sm_written) <= 1)
            w_sbase = Array([Signal(aw("ABUF") + 2, name=f"w{i}_sbase") for i in range(2)])
            with m.If(start_ok):
                m.d.sync += [rd_active.eq(1), rr.eq(0), rbeat.eq(0), rem.eq(bank_len[rb]),
                             w_sbase[rb].eq(bank_sbase[rb]), sm_started.eq(sm_started + 1)]
            with m.Elif(rd_active & ((smf.level + rd_pend) < 3)):
                m.d.comb += rd_issue.eq(1)
                with m.If(rd_last):
                    m.d.sync += [rbeat.eq(0), rem.eq(bank_len[rb])]
                    with m.If(rr == R - 1):
                        m.d.sync += [rd_active.eq(0), rb.eq(~rb)]
                        m.d.comb += [bank_free_set.eq(1), bank_free_idx.eq(rb)]
                    with m.Else():
                        m.d.sync += rr.eq(rr + 1)
                with m.Else():
                    m.d.sync += [rbeat.eq(rbeat + 1), rem.eq(rem - C)]
            for c in range(C):
                m.d.comb += smx.i.payload.data[c].eq(smf.r_data[c * B:(c + 1) * B].as_signed())
            m.d.comb += [smx.i.payload.count.eq(smf.r_data[C * B:C * B + len(rd_cnt)]),
                         smx.i.payload.last.eq(smf.r_data[-1]),
                         smx.i.valid.eq(smf.r_rdy), smf.r_en.eq(smx.i.ready), smx.clear.eq(start)]
            # writer: probabilities of query ``wr`` go to column ``wr`` of the block's windows
            wbk = Signal()
            wr = Signal(range(R))
            wwin = Signal(aw("ABUF") + 2)
            wslot = Signal(range(Wd + 1))
            pad = Signal()
            sb_en = Signal(C * Ws)
            sb_data = Signal(C * Ws * AB)
            m.d.comb += smx.o.ready.eq(~pad)
            m.d.comb += sb_wp.addr.eq(w_sbase[wbk] + wwin)
            with m.If(pad):
                for c in range(C):
                    for j in range(Ws):
                        m.d.comb += sb_en[c * Ws + j].eq((wr == c) & (j >= wslot) & (j < Wd))
                m.d.sync += [pad.eq(0), wwin.eq(0), wslot.eq(0)]
                with m.If(wr == R - 1):
                    m.d.sync += [wr.eq(0), wbk.eq(~wbk)]
                    m.d.comb += sm_written_inc.eq(1)
                with m.Else():
                    m.d.sync += wr.eq(wr + 1)
            with m.Elif(smx.o.valid):
                for c in range(C):
                    for j in range(Ws):
                        m.d.comb += [sb_data[(c * Ws + j) * AB:(c * Ws + j + 1) * AB].eq(
                                         smx.o.payload.data[j % C]),
                                     sb_en[c * Ws + j].eq((wr == c) & (j >= wslot) & (j < wslot + C))]
                nxt_full = wslot + C >= Wd
                with m.If(smx.o.payload.last):
                    with m.If(nxt_full):
                        m.d.sync += [wwin.eq(0), wslot.eq(0)]
                        with m.If(wr == R - 1):
                            m.d.sync += [wr.eq(0), wbk.eq(~wbk)]
                            m.d.comb += sm_written_inc.eq(1)
                        with m.Else():
                            m.d.sync += wr.eq(wr + 1)
                    with m.Else():
                        m.d.sync += [pad.eq(1), wslot.eq(wslot + C)]
                with m.Elif(nxt_full):
                    m.d.sync += [wslot.eq(0), wwin.eq(wwin + 1)]
                with m.Else():
                    m.d.sync += wslot.eq(wslot + C)
            m.d.comb += [sb_wp.data.eq(sb_data),
                         sb_wp.en.eq(Cat(*[Mux(sb_en[i], (1 << per_slot) - 1, 0)[:per_slot]
                                           for i in range(C * Ws)]))]
            m.d.comb += sm_path_busy.eq(rd_active | rd_pend | smf.r_rdy | smx.busy | pad)
            with m.If(start):
                m.d.sync += [rb.eq(0), wbk.eq(0), wr.eq(0), pad.eq(0), rd_active.eq(0),
                             wwin.eq(0), wslot.eq(0)]

        # -- vector unit: VBUF reader → LayerNormUnit | requant → VBUF (in place) + ABUF ------------
        m.submodules.layernorm = ln = LayerNormUnit(cfg, C)
        GB = cfg.ln_gamma_bits
        vf_width = C * VB + GB + ACC + 2
        m.submodules.vec_fifo = vff = fifo.SyncFIFO(width=vf_width, depth=4)
        vr_active, vr_phase = Signal(), Signal()
        vr_ct, vr_f = Signal(sta_isa.DIM_BITS), Signal(sta_isa.DIM_BITS)
        vr_row = Signal(big)
        vr_issue, vr_pend = Signal(), Signal()
        vr_pphase, vr_plast = Signal(), Signal()
        vr_last = vr_f == cmd.length - 1
        started = Signal()
        m.d.comb += vec_active.eq(vec_go)
        with m.If(vec_go & ~started):
            m.d.sync += [started.eq(1), vr_active.eq(1), vr_phase.eq(~is_ln), vr_ct.eq(0),
                         vr_f.eq(0), vr_row.eq(cmd.a_base)]
        with m.Elif(vr_active & ((vff.level + vr_pend) < 3)):
            m.d.comb += vr_issue.eq(1)
            with m.If(vr_last):
                m.d.sync += vr_f.eq(0)
                with m.If(is_ln & ~vr_phase):
                    m.d.sync += vr_phase.eq(1)
                with m.Else():
                    m.d.sync += [vr_phase.eq(~is_ln), vr_ct.eq(vr_ct + 1),
                                 vr_row.eq(vr_row + cmd.a_stride)]
                    with m.If(vr_ct == cmd.n_tiles - 1):
                        m.d.sync += vr_active.eq(0)
            with m.Else():
                m.d.sync += vr_f.eq(vr_f + 1)
        with m.If(vec_done):
            m.d.sync += started.eq(0)
        m.d.sync += [vr_pend.eq(vr_issue), vr_pphase.eq(vr_phase), vr_plast.eq(vr_last)]
        m.d.comb += vec_p_addr.eq((cmd.p_base + vr_f)[:aw("PBUF")])
        p_now = Signal(param_layout(cfg))
        m.d.comb += p_now.as_value().eq(rp["PBUF"].data[:len(p_now.as_value())])
        m.d.comb += [vff.w_en.eq(vr_pend),
                     vff.w_data.eq(Cat(rp["VBUF"].data[:C * VB], p_now.mult[:GB], p_now.bias,
                                       vr_pphase, vr_plast))]
        f_x = vff.r_data[:C * VB]
        f_gamma = vff.r_data[C * VB:C * VB + GB]
        f_beta = vff.r_data[C * VB + GB:C * VB + GB + ACC]
        f_phase = vff.r_data[C * VB + GB + ACC]
        f_last = vff.r_data[C * VB + GB + ACC + 1]
        for c in range(C):
            m.d.comb += ln.i.payload.x[c].eq(f_x[c * VB:(c + 1) * VB].as_signed())
        m.d.comb += [ln.i.payload.gamma.eq(f_gamma.as_signed()), ln.i.payload.beta.eq(f_beta.as_signed()),
                     ln.i.payload.phase.eq(f_phase), ln.i.payload.last.eq(f_last),
                     ln.features.eq(cmd.length), ln.mult.eq(prm[0].mult), ln.shift.eq(prm[0].shift),
                     ln.mult8.eq(prm[1].mult), ln.shift8.eq(prm[1].shift), ln.o.ready.eq(1)]
        rq_units = []
        rq_valid = Signal()
        with m.If(is_ln):
            m.d.comb += [ln.i.valid.eq(vff.r_rdy), vff.r_en.eq(ln.i.ready)]
        with m.Else():
            m.d.comb += [vff.r_en.eq(1), rq_valid.eq(vff.r_rdy)]
        for c in range(C):
            rq = RequantUnit(cfg, out_bits=AB, signed=True)
            m.submodules[f"vec_rq{c}"] = rq
            m.d.comb += [rq.acc.eq(f_x[c * VB:(c + 1) * VB].as_signed()), rq.mult.eq(prm[0].mult),
                         rq.shift.eq(prm[0].shift), rq.valid.eq(rq_valid)]
            rq_units.append(rq)
        # writer
        vw_ct, vw_f = Signal(sta_isa.DIM_BITS), Signal(sta_isa.DIM_BITS)
        vw_row, vw_orow, vw_win = Signal(big), Signal(big), Signal(big)
        vw_slot = Signal(range(max(Ws, Wd) + 1))
        out_v = Mux(is_ln, ln.o.valid, rq_units[0].o_valid)
        with m.If(vec_go & ~started):
            m.d.sync += [vw_ct.eq(0), vw_f.eq(0), vw_row.eq(cmd.a_base), vw_orow.eq(cmd.o_base),
                         vw_win.eq(0), vw_slot.eq(0)]
        m.d.comb += [vec_vb_en.eq(out_v & is_ln), vec_vb_addr.eq((vw_row + vw_f)[:aw("VBUF")]),
                     vec_a_addr.eq((vw_orow + vw_win)[:aw("ABUF")])]
        for c in range(C):
            m.d.comb += vec_vb_data[c * VB:(c + 1) * VB].eq(ln.o.payload.y[c])
        a_on = out_v & (~is_ln | (cmd.dest == sta_isa.Dest.ABUF))
        with m.If(a_on):
            for c in range(C):
                v8 = Mux(is_ln, ln.o.payload.y8[c], rq_units[c].o)
                for j in range(Ws):
                    m.d.comb += [vec_a_data[(c * Ws + j) * AB:(c * Ws + j + 1) * AB].eq(v8),
                                 vec_a_en[c * Ws + j].eq(vw_slot == j)]
        with m.If(out_v):
            with m.If(vw_f == cmd.length - 1):
                m.d.sync += [vw_f.eq(0), vw_win.eq(0), vw_slot.eq(0), vw_ct.eq(vw_ct + 1),
                             vw_row.eq(vw_row + cmd.a_stride), vw_orow.eq(vw_orow + cmd.o_stride)]
                with m.If(vw_ct == cmd.n_tiles - 1):
                    m.d.comb += vec_done.eq(1)
            with m.Else():
                m.d.sync += vw_f.eq(vw_f + 1)
                with m.If(vw_slot + 1 == w_lay):
                    m.d.sync += [vw_slot.eq(0), vw_win.eq(vw_win + 1)]
                with m.Else():
                    m.d.sync += vw_slot.eq(vw_slot + 1)

        # -- host read path ---------------------------------------------------------------------
        r_space = self.rd.payload.addr[SS:]
        l_space = Signal(3)
        l_sub = Signal(8)
        l_entry = Signal(SS)
        resp = Signal(32)
        shared = (r_space == SPACES["CBUF"]) | (r_space == SPACES["WBUF"]) \
            | (r_space == SPACES["ABUF"]) | (r_space == SPACES["PBUF"]) | (r_space == SPACES["VBUF"])
        host_entry = {sp: self.rd.payload.addr[sta_isa.sub_bits(cfg, sp):SS] for sp in mems}
        m.d.comb += [
            rp["WBUF"].addr.eq(Mux(busy, ctrl_w_addr, host_entry["WBUF"])),
            rp["ABUF"].addr.eq(Mux(busy, a_addr, host_entry["ABUF"])),
            rp["PBUF"].addr.eq(Mux(busy, Mux(vec_active, vec_p_addr, drain.p_addr_o),
                                   host_entry["PBUF"])),
            rp["VBUF"].addr.eq(Mux(busy, Mux(vec_active, (vr_row + vr_f)[:aw("VBUF")], vbuf_drain_addr),
                                   host_entry["VBUF"])),
            rp["OBUF"].addr.eq(host_entry["OBUF"]),
            rp["CYCLOG"].addr.eq(host_entry["CYCLOG"]),
        ]
        host_acc = Signal()                      # a host read is accepted (its address used)
        with m.If(~busy & ~(cb_first & ~host_acc)):
            # the host's address, except in the start cycle if no host read takes the port
            m.d.comb += rp["CBUF"].addr.eq(host_entry["CBUF"])
        csr_vals = {
            CSR["START"]: count,
            CSR["STATUS"]: Cat(busy, done, error, Const(0, 5), err_code, err_cmd),
            CSR["CYCLES"]: c_total, CSR["MAC_ACTIVE"]: c_active, CSR["STALLS"]: c_stall,
            CSR["SPARSE_CYCLES"]: c_sparse, CSR["DENSE_CYCLES"]: c_dense,
            CSR["COMMANDS"]: c_cmds,
            CSR["CONFIG"]: Const(sta_isa.config_word(cfg), 32),
            CSR["SOFTMAX_BUSY"]: c_smbusy, CSR["SOFTMAX_WAIT"]: c_smwait,
            CSR["VECTOR_CYCLES"]: c_vec, CSR["BARRIER_WAIT"]: c_barrier,
        }
        with m.FSM(name="host_rd"):
            with m.State("ACCEPT"):
                m.d.comb += [self.rd.ready.eq(~(shared & busy)),
                             host_acc.eq(self.rd.valid & self.rd.ready)]
                with m.If(self.rd.valid & self.rd.ready):
                    m.d.sync += [l_space.eq(r_space), l_sub.eq(self.rd.payload.addr),
                                 l_entry.eq(self.rd.payload.addr[:SS])]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.Switch(l_space):
                    for sp, mem in mems.items():
                        sb = sta_isa.sub_bits(cfg, sp)
                        nsub = sta_isa.sub_words(cfg, sp)
                        width = len(rp[sp].data)
                        padded = Cat(rp[sp].data, Const(0, nsub * 32 - width)) \
                            if nsub * 32 > width else rp[sp].data
                        with m.Case(SPACES[sp]):
                            if nsub == 1:
                                m.d.sync += resp.eq(padded[:32])
                            else:
                                with m.Switch(l_sub[:sb]):
                                    for k in range(nsub):
                                        with m.Case(k):
                                            m.d.sync += resp.eq(padded[32 * k:32 * (k + 1)])
                                    with m.Default():
                                        m.d.sync += resp.eq(0)
                    with m.Case(SPACES["CSR"]), m.Switch(l_entry):
                        for idx, val in csr_vals.items():
                            with m.Case(idx):
                                m.d.sync += resp.eq(val)
                        with m.Default():
                            m.d.sync += resp.eq(0)
                    with m.Default():
                        m.d.sync += resp.eq(0)
                m.next = "RESP"
            with m.State("RESP"):
                m.d.comb += [self.rd_data.valid.eq(1), self.rd_data.payload.eq(resp)]
                with m.If(self.rd_data.ready):
                    m.next = "ACCEPT"
        return m
