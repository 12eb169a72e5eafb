"""``StaCore``: the STA MAC array with its buffers, GEMM controller, counters and host port.

Block diagram::

    host wr/rd streams ──► address decode ──► CBUF  WBUF  ABUF  PBUF      OBUF ──► host rd
                                               │     │     │     │         ▲
                            START ──► controller ─ addr ─┴─────┤     │         │
                                       (fetch, decode,         ▼     ▼         │
                                        checks, tiling) ──► UnifiedMacArray ──► DrainUnit

Memories and the host address map are those of :mod:`nmaccel.model.sta_isa`. The host writes
the program into CBUF and the operands into WBUF/ABUF/PBUF, writes the command count to CSR
START, waits for ``done`` (or polls CSR STATUS) and reads OBUF and the counters.

Tiling: the controller tiles every GEMM over the array (token tiles outer, output-feature
tiles inner, ``k_steps`` beats per tile). GEMMs larger than the buffers are split into
several commands by the compiler (:mod:`nmaccel.model.sta_program`).

Controller timing per command: FETCH, DECODE1, DECODE2, CHECK (4 cycles), then one beat per
cycle (``m_tiles · n_tiles · k_steps`` beats), then NEXT (1 cycle). The last beat of a tile
waits while the previous tile's last beat is fewer than ``R`` cycles old (the drain unit reads
the shadow one row per cycle): those are the stall cycles. After the last command the core
waits for the array pipeline and the drain to empty. The analytic model in
:mod:`nmaccel.model.sta_cycles` follows these rules and is held to the RTL by tests.

Errors (CSR STATUS, codes in :data:`nmaccel.model.sta_isa.ERRORS`) stop the run: unknown
opcode or output format, zero sizes, operand/output/parameter ranges beyond the buffers,
N:M indices that are not strictly ascending within a group, and a bad command count.

Ports
    ``wr``      In  stream of ``{addr, data}``: 32-bit host writes (always ready).
    ``rd``      In  stream of ``{addr}``: host read requests; buffer spaces read by the
                controller (CBUF, WBUF, ABUF, PBUF) are served only while idle.
    ``rd_data`` Out stream of 32-bit read data, one per request, in order.
    ``busy``, ``done``, ``error`` Out: run state (``done``/``error`` stay until the next START).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out
from nmaccel.hw.config import StaConfig, clog2
from nmaccel.hw.sta.array import UnifiedMacArray
from nmaccel.hw.sta.drain import DrainUnit
from nmaccel.hw.sta.isa import (
    command_layout,
    padded_bits,
    read_layout,
    write_layout,
)
from nmaccel.model import sta_isa
from nmaccel.model.sta_isa import CSR, SPACES

__all__ = ["StaCore"]

_ERR = sta_isa.ERROR_CODES


class StaCore(wiring.Component):
    """The STA GEMM engine with buffers and a host port (see the module docstring)."""

    def __init__(self, config: StaConfig) -> None:
        if not isinstance(config, StaConfig):
            raise TypeError(f"config must be a StaConfig, not {type(config).__name__}")
        self.config = config
        self.array_latency = 1 + 2 + clog2(config.lanes)
        #: cycles from a beat's issue (read address) to the array's ``captured`` pulse
        self.capture_delay = self.array_latency + 2
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
        R = cfg.rows
        SS = sta_isa.space_shift(cfg)
        ratio = sta_isa.dense_ratio(cfg)

        def aw(space):
            return max(clog2(sta_isa.space_depth(cfg, space)), 1)

        # -- memories ------------------------------------------------------------------------
        mems = {}
        for space in ("CBUF", "WBUF", "ABUF", "PBUF"):
            mems[space] = memory.Memory(shape=unsigned(padded_bits(sta_isa.space_width(cfg, space))),
                                        depth=sta_isa.space_depth(cfg, space), init=[])
        mems["OBUF"] = memory.Memory(shape=unsigned(sta_isa.space_width(cfg, "OBUF")),
                                     depth=cfg.obuf_depth, init=[])
        mems["CYCLOG"] = memory.Memory(shape=unsigned(32), depth=cfg.cbuf_depth, init=[])
        for name, mem in mems.items():
            m.submodules[name.lower()] = mem
        wp = {s: mems[s].write_port(granularity=32) for s in ("CBUF", "WBUF", "ABUF", "PBUF")}
        rp = {s: mems[s].read_port() for s in mems}
        o_wp = mems["OBUF"].write_port()
        log_wp = mems["CYCLOG"].write_port()

        m.submodules.array = array = UnifiedMacArray(cfg)
        m.submodules.drain = drain = DrainUnit(cfg)

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
        cmd_cyc = Signal(32)

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
            m.d.comb += [
                port.addr.eq(entry),
                port.data.eq(Cat(*([self.wr.payload.data] * nslices))),
            ]
            if nslices == 1:
                m.d.comb += port.en.eq(sel)
            else:
                with m.If(sel):
                    m.d.comb += port.en.eq(Const(1, nslices) << self.wr.payload.addr[:sb])
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
        w_row = Signal(aw("WBUF") + 1)
        a_tile = Signal(aw("ABUF") + 1)
        o_tile = Signal(aw("OBUF") + 1)
        p_tile = Signal(aw("PBUF") + 1)
        a_str = Signal(sta_isa.DIM_BITS)
        ext_w = Signal(2 * sta_isa.DIM_BITS + 1)
        ext_a = Signal(2 * sta_isa.DIM_BITS + 1)
        ext_o = Signal(2 * sta_isa.DIM_BITS + clog2(R) + 2)
        ext_p = Signal(sta_isa.DIM_BITS + clog2(R) + 2)
        gap = Signal(range(R + 1), init=R)
        issue = Signal()
        issue_last = Signal()
        inflight = Signal()
        stall = Signal()

        m.d.comb += [rp["CBUF"].addr.eq(pc)]
        cmd_word = rp["CBUF"].data[:len(cmd.as_value())]

        # ``gap``: cycles since the last tile-completing beat was issued (saturates at R).
        with m.If(issue_last):
            m.d.sync += gap.eq(1)
        with m.Elif(gap != R):
            m.d.sync += gap.eq(gap + 1)

        with m.If(busy):
            m.d.sync += [c_total.eq(c_total + 1), cmd_cyc.eq(cmd_cyc + 1)]
        with m.If(issue):
            m.d.sync += c_active.eq(c_active + 1)
        with m.If(stall):
            m.d.sync += c_stall.eq(c_stall + 1)

        m.d.comb += array.clear_err.eq(start)
        dims_last_tile = (rt == cmd.m_tiles - 1) & (ct == cmd.n_tiles - 1)
        k_last = s == cmd.k_steps - 1

        def fail(code):
            m.d.sync += [err_code.eq(code), err_cmd.eq(pc), error.eq(1), busy.eq(0)]
            m.next = "IDLE"

        with m.FSM(name="ctrl"):
            with m.State("IDLE"), m.If(start):
                m.d.sync += [
                    count.eq(self.wr.payload.data), pc.eq(0), done.eq(0), error.eq(0),
                    err_code.eq(0), err_cmd.eq(0), c_total.eq(0), c_active.eq(0),
                    c_stall.eq(0), c_sparse.eq(0), c_dense.eq(0), c_cmds.eq(0),
                    cmd_cyc.eq(0), gap.eq(R), busy.eq(1),
                ]
                with m.If((self.wr.payload.data == 0)
                          | (self.wr.payload.data > cfg.cbuf_depth)):
                    m.d.sync += [err_code.eq(_ERR["count"]), error.eq(1), busy.eq(0)]
                with m.Else():
                    m.next = "FETCH"
            with m.State("FETCH"):              # CBUF address = pc
                with m.If(array.meta_err):
                    fail(_ERR["meta"])
                with m.Else():
                    m.next = "DECODE1"
            with m.State("DECODE1"):            # CBUF data valid
                m.d.sync += cmd.as_value().eq(cmd_word)
                m.next = "DECODE2"
            with m.State("DECODE2"):            # extents
                stride = Mux(cmd.mode == sta_isa.MODE_DENSE,
                             (cmd.k_steps + (ratio - 1)) // ratio if ratio > 1 else cmd.k_steps,
                             cmd.k_steps)
                m.d.sync += [
                    a_str.eq(stride),
                    ext_w.eq(cmd.w_base + cmd.m_tiles * cmd.k_steps),
                    ext_a.eq(cmd.a_base + cmd.n_tiles * stride),
                    ext_o.eq(cmd.o_base + cmd.n_tiles * cmd.m_tiles * R),
                    ext_p.eq(cmd.p_base + cmd.m_tiles * R),
                ]
                m.next = "CHECK"
            with m.State("CHECK"):
                m.d.sync += [s.eq(0), rt.eq(0), ct.eq(0), sl.eq(0), q.eq(0),
                             w_row.eq(cmd.w_base), a_tile.eq(cmd.a_base),
                             o_tile.eq(cmd.o_base), p_tile.eq(cmd.p_base)]
                with m.If(cmd.op == sta_isa.OP_NOP):
                    m.next = "NEXT"
                with m.Elif(cmd.op != sta_isa.OP_GEMM):
                    fail(_ERR["opcode"])
                with m.Elif(cmd.osel == 3):
                    fail(_ERR["osel"])
                with m.Elif((cmd.m_tiles == 0) | (cmd.n_tiles == 0) | (cmd.k_steps == 0)):
                    fail(_ERR["zero"])
                with m.Elif(ext_w > cfg.wbuf_depth):
                    fail(_ERR["wbuf"])
                with m.Elif(ext_a > cfg.abuf_depth):
                    fail(_ERR["abuf"])
                with m.Elif(ext_o > cfg.obuf_depth):
                    fail(_ERR["obuf"])
                with m.Elif(ext_p > cfg.pbuf_depth):
                    fail(_ERR["pbuf"])
                with m.Else():
                    m.next = "RUN"
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
                                         ct.eq(ct + 1), a_tile.eq(a_tile + a_str)]
                        with m.Else():
                            m.d.sync += [rt.eq(rt + 1), w_row.eq(w_row + cmd.k_steps),
                                         p_tile.eq(p_tile + R)]
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
                m.d.sync += [pc.eq(pc + 1), cmd_cyc.eq(0), c_cmds.eq(c_cmds + 1)]
                with m.If(cmd.op == sta_isa.OP_GEMM):
                    with m.If(cmd.mode == sta_isa.MODE_SPARSE):
                        m.d.sync += c_sparse.eq(c_sparse + cmd_cyc + 1)
                    with m.Else():
                        m.d.sync += c_dense.eq(c_dense + cmd_cyc + 1)
                with m.If(pc + 1 == count):
                    m.next = "WAIT"
                with m.Else():
                    m.next = "FETCH"
            with m.State("WAIT"):               # array pipeline and drain empty out
                with m.If(array.meta_err):
                    fail(_ERR["meta"])
                with m.Elif(~inflight & ~drain.busy):
                    m.d.sync += [busy.eq(0), done.eq(1)]
                    m.next = "IDLE"

        # -- operand reads and the array ------------------------------------------------------
        dense = cmd.mode == sta_isa.MODE_DENSE
        a_addr = Mux(dense, a_tile + q, a_tile + s)
        ctrl_w_addr = (w_row + s)[:aw("WBUF")]
        ctrl_a_addr = a_addr[:aw("ABUF")]
        v1, c1, l1, sl1 = Signal(), Signal(), Signal(), Signal.like(sl)
        m.d.sync += [v1.eq(issue), c1.eq(issue & (s == 0)), l1.eq(issue_last), sl1.eq(sl)]
        m.d.comb += [
            array.valid.eq(v1), array.clear.eq(c1), array.last.eq(l1), array.mode.eq(dense),
            array.slice.eq(sl1),
            array.w_word.eq(rp["WBUF"].data[:len(array.w_word)]),
            array.a_word.eq(rp["ABUF"].data[:len(array.a_word)]),
        ]

        # Tile records travel beside the pipeline to the drain unit.
        rec_o, rec_p, rec_s, rec_v = o_tile[:aw("OBUF")], p_tile[:aw("PBUF")], cmd.osel, issue_last
        flags = []
        for i in range(self.capture_delay):
            no, np_, ns, nv = (Signal.like(rec_o, name=f"rec_o{i}"), Signal.like(rec_p, name=f"rec_p{i}"),
                               Signal(2, name=f"rec_s{i}"), Signal(name=f"rec_v{i}"))
            m.d.sync += [no.eq(rec_o), np_.eq(rec_p), ns.eq(rec_s), nv.eq(rec_v)]
            rec_o, rec_p, rec_s, rec_v = no, np_, ns, nv
            flags.append(nv)
        any_flag = flags[0]
        for f in flags[1:]:
            any_flag = any_flag | f
        m.d.comb += inflight.eq(any_flag)
        m.d.comb += [
            drain.start.eq(array.captured),
            drain.o_addr.eq(rec_o), drain.p_addr.eq(rec_p), drain.osel.eq(rec_s),
            array.row_sel.eq(drain.row_sel), drain.row.eq(array.row),
            drain.p_data.eq(rp["PBUF"].data[:len(drain.p_data.as_value())]),
            o_wp.addr.eq(drain.o_wr_addr), o_wp.data.eq(drain.o_wr_data), o_wp.en.eq(drain.o_wr_en),
        ]

        # -- host read path ---------------------------------------------------------------------
        r_space = self.rd.payload.addr[SS:]
        l_space = Signal(3)
        l_sub = Signal(8)
        l_entry = Signal(SS)
        resp = Signal(32)
        shared = (r_space == SPACES["CBUF"]) | (r_space == SPACES["WBUF"]) \
            | (r_space == SPACES["ABUF"]) | (r_space == SPACES["PBUF"])
        host_entry = {sp: self.rd.payload.addr[sta_isa.sub_bits(cfg, sp):SS] for sp in mems}
        m.d.comb += [
            rp["WBUF"].addr.eq(Mux(busy, ctrl_w_addr, host_entry["WBUF"])),
            rp["ABUF"].addr.eq(Mux(busy, ctrl_a_addr, host_entry["ABUF"])),
            rp["PBUF"].addr.eq(Mux(busy, drain.p_addr_o, host_entry["PBUF"])),
            rp["OBUF"].addr.eq(host_entry["OBUF"]),
            rp["CYCLOG"].addr.eq(host_entry["CYCLOG"]),
        ]
        with m.If(~busy):
            m.d.comb += rp["CBUF"].addr.eq(host_entry["CBUF"])
        csr_vals = {
            CSR["START"]: count,
            CSR["STATUS"]: Cat(busy, done, error, Const(0, 5), err_code, err_cmd),
            CSR["CYCLES"]: c_total, CSR["MAC_ACTIVE"]: c_active, CSR["STALLS"]: c_stall,
            CSR["SPARSE_CYCLES"]: c_sparse, CSR["DENSE_CYCLES"]: c_dense,
            CSR["COMMANDS"]: c_cmds,
            CSR["CONFIG"]: Const(cfg.rows | cfg.cols << 8 | cfg.lanes << 16 | cfg.n << 24
                                 | (cfg.m & 0xF) << 28, 32),
        }
        with m.FSM(name="host_rd"):
            with m.State("ACCEPT"):
                m.d.comb += self.rd.ready.eq(~(shared & busy))
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

