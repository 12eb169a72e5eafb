"""``SdramController``: an SDR SDRAM controller for one 16-bit chip (the ULX3S's
IS42S16160G / MT48LC16M16A2), word by word, rows kept open.

Ports
    ``cmd`` In(stream of :func:`request_layout`): one word per request, ``addr`` = ``{row,
    bank, column}`` (column in the low bits: consecutive addresses stay in one row, and the
    next row of a sequential stream opens in the next bank); ``write`` selects a write of
    ``data``.
    ``rdata`` Out(stream of ``data_bits``): read words, in request order. Reads are issued
    only while the answer buffer (``read_buffer`` words) has room for them, so the consumer
    may apply back-pressure.
    ``ready`` Out(1): the power-up sequence is done (requests wait until then).
    ``pins`` Out(:func:`pins_signature`): the chip's command, address, data-mask and
    data pins; ``dq_o``/``dq_oe``/``dq_i`` are the sides of the bidirectional data bus (the
    board top puts them on an I/O buffer).

Behaviour
    Power-up: NOPs for ``init_wait`` cycles, PRECHARGE all, ``init_refreshes`` AUTO
    REFRESH, LOAD MODE (:func:`~nmaccel.spec.sdram.mode_register`: burst length 1, the CAS
    latency). Then per request: a READ/WRITE if the bank has the row open (one word per
    cycle within a row), else PRECHARGE that bank (row miss) or ACTIVE (bank closed), each
    when every minimum of :class:`~nmaccel.spec.sdram.SdramTiming` since the commands before
    it has passed (per-bank counters for tRCD, tRAS, tWR, tRP, tRC; tRRD, tRFC, tMRD
    globally). A WRITE waits until the data of earlier READs has left the bus. Every
    AUTO REFRESH follows the previous one within ``t_refi`` cycles: when the interval minus
    the longest possible wait has passed, open rows are precharged and the refresh issued
    before the next request.

Latency and throughput
    A row hit: the command reaches the pins 1 cycle after the request is accepted; read data
    reaches ``rdata`` ``cas_latency + 2`` cycles after that. Consecutive words of a row:
    one per cycle. A row miss adds ``t_rp + t_rcd`` cycles (and waits for tRAS). One clock
    domain: the controller runs on the core's clock (no crossing).
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from nmaccel.spec.sdram import Command, SdramTiming, mode_register, refresh_slack

__all__ = ["SdramController", "pins_signature", "request_layout"]


def request_layout(timing: SdramTiming) -> data.StructLayout:
    return data.StructLayout({"addr": unsigned(timing.addr_bits), "write": unsigned(1),
                              "data": unsigned(timing.data_bits)})


def pins_signature(timing: SdramTiming) -> wiring.Signature:
    """The chip side: ``cs_n ras_n cas_n we_n`` (one :class:`~nmaccel.spec.sdram.Command`),
    ``ba``, ``a``, ``dqm`` (one bit per byte), ``dq_o``/``dq_oe`` (driven by the
    controller), ``dq_i`` (from the chip)."""
    return wiring.Signature({
        "cs_n": Out(1, init=1), "ras_n": Out(1, init=1), "cas_n": Out(1, init=1),
        "we_n": Out(1, init=1), "ba": Out(timing.bank_bits), "a": Out(timing.row_bits),
        "dqm": Out(timing.data_bits // 8), "dq_o": Out(timing.data_bits), "dq_oe": Out(1),
        "dq_i": In(timing.data_bits),
    })


class SdramController(wiring.Component):
    """SDR SDRAM controller (module docstring).

    Parameters
    ----------
    timing
        The chip's timing at this clock (:meth:`nmaccel.spec.sdram.SdramChip.at`).
    read_buffer
        Depth of the read answer buffer (at least ``cas_latency + 3`` for one read per
        cycle with a consumer that is always ready).

    Attributes
    ----------
    cmd, rdata, ready, pins
        See the module docstring.
    """

    def __init__(self, timing: SdramTiming, read_buffer: int = 8):
        if not isinstance(timing, SdramTiming):
            raise TypeError(f"timing must be an SdramTiming, not {type(timing).__name__}")
        if isinstance(read_buffer, bool) or not isinstance(read_buffer, int) \
                or read_buffer < timing.cas_latency + 3:
            raise ValueError(f"read_buffer must be an integer >= cas_latency + 3 = "
                             f"{timing.cas_latency + 3}, not {read_buffer!r}")
        if refresh_slack(timing) * 2 > timing.t_refi:
            raise ValueError(f"the refresh interval t_refi={timing.t_refi} cycles is too short "
                             f"for this chip's row timing (needs at least "
                             f"{2 * refresh_slack(timing)})")
        self.timing = timing
        self.read_buffer = read_buffer
        super().__init__({
            "cmd": In(stream.Signature(request_layout(timing))),
            "rdata": Out(stream.Signature(unsigned(timing.data_bits))),
            "ready": Out(1),
            "pins": Out(pins_signature(timing)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        t = self.timing
        banks = 1 << t.bank_bits
        longest = max(t.init_wait, t.t_refi, t.t_rc, t.t_rfc, t.t_ras) + 1

        def counter(name: str) -> Signal:
            return Signal(range(longest), name=name)

        # -- pins: registered; `issue` sets them for one cycle, NOP otherwise ----------------
        cmd_code = Signal(4, init=Command.NOP)
        addr_pins = Signal(t.row_bits)
        ba_pins = Signal(t.bank_bits)
        m.d.comb += [self.pins.cs_n.eq(cmd_code[3]), self.pins.ras_n.eq(cmd_code[2]),
                     self.pins.cas_n.eq(cmd_code[1]), self.pins.we_n.eq(cmd_code[0]),
                     self.pins.a.eq(addr_pins), self.pins.ba.eq(ba_pins),
                     self.pins.dqm.eq(0)]
        m.d.sync += [cmd_code.eq(Command.NOP), self.pins.dq_oe.eq(0)]

        def issue(code: Command, bank=0, addr=0):
            m.d.sync += [cmd_code.eq(code), ba_pins.eq(bank), addr_pins.eq(addr)]

        # -- timing counters: cycles until a command may be issued (0: now) ----------------
        act_wait = Array(counter(f"act_wait_{b}") for b in range(banks))   # tRP, tRC
        pre_wait = Array(counter(f"pre_wait_{b}") for b in range(banks))   # tRAS, tWR
        rw_wait = Array(counter(f"rw_wait_{b}") for b in range(banks))     # tRCD
        rrd_wait = counter("rrd_wait")                                     # tRRD
        any_wait = counter("any_wait")                                     # tRFC, tMRD, tRP(all)
        write_wait = counter("write_wait")            # read data still due on the bus
        for c in [*act_wait, *pre_wait, *rw_wait, rrd_wait, any_wait, write_wait]:
            with m.If(c != 0):
                m.d.sync += c.eq(c - 1)

        def at_least(c: Signal, cycles: int):
            """``c`` so that the next command it guards comes ``cycles`` after this one."""
            if cycles > 1:
                with m.If(c < cycles):             # (c - 1 would be below cycles - 1)
                    m.d.sync += c.eq(cycles - 1)

        is_open = Signal(banks)
        open_row = Array(Signal(t.row_bits, name=f"open_row_{b}") for b in range(banks))

        # -- refresh interval ------------------------------------------------------------
        since_refresh = counter("since_refresh")
        refresh_due = Signal()
        m.d.comb += refresh_due.eq(since_refresh >= t.t_refi - refresh_slack(t))
        with m.If(since_refresh < longest - 1):
            m.d.sync += since_refresh.eq(since_refresh + 1)

        def refresh():
            issue(Command.AUTO_REFRESH)
            at_least(any_wait, t.t_rfc)
            m.d.sync += since_refresh.eq(0)

        # -- read answers ----------------------------------------------------------------
        m.submodules.answers = answers = fifo.SyncFIFOBuffered(width=t.data_bits,
                                                               depth=self.read_buffer)
        in_flight = Signal(range(self.read_buffer + 1))   # reads issued, answer not taken
        due = Signal(t.cas_latency + 1)                   # READ on the pins, CL cycles ago
        read_now = Signal()
        taken = Signal()
        m.d.comb += [answers.w_en.eq(due[-1]), answers.w_data.eq(self.pins.dq_i),
                     self.rdata.payload.eq(answers.r_data),
                     self.rdata.valid.eq(answers.r_rdy), answers.r_en.eq(self.rdata.ready),
                     taken.eq(self.rdata.valid & self.rdata.ready)]
        m.d.sync += [due.eq(Cat(read_now, due[:-1])),
                     in_flight.eq(in_flight + read_now - taken)]

        # -- the request ------------------------------------------------------------------
        req = self.cmd.payload
        col = req.addr[:t.col_bits]
        bank = req.addr[t.col_bits:t.col_bits + t.bank_bits]
        row = req.addr[t.col_bits + t.bank_bits:]
        col_addr = Cat(col, Const(0, t.row_bits - t.col_bits))   # A10 = 0: no auto-precharge
        all_banks = Const(1 << 10, t.row_bits)
        room = Signal()
        m.d.comb += room.eq(in_flight < self.read_buffer)

        init_refreshes = Signal(range(t.init_refreshes + 1))
        with m.FSM(name="sdram"):
            with m.State("POWER_UP"):
                with m.If(since_refresh >= t.init_wait):
                    issue(Command.PRECHARGE, addr=all_banks)
                    at_least(any_wait, t.t_rp)
                    m.next = "INIT_REFRESH"
            with m.State("INIT_REFRESH"):
                with m.If(any_wait == 0):
                    with m.If(init_refreshes == t.init_refreshes):
                        issue(Command.LOAD_MODE, addr=mode_register(t))
                        at_least(any_wait, t.t_mrd)
                        m.next = "IDLE"
                    with m.Else():
                        refresh()
                        m.d.sync += init_refreshes.eq(init_refreshes + 1)
            with m.State("IDLE"):
                m.d.comb += self.ready.eq(any_wait == 0)
                with m.If(refresh_due):
                    m.next = "CLOSE_ALL"
                with m.Elif(self.cmd.valid & (any_wait == 0)):
                    with m.If(is_open.bit_select(bank, 1) & (open_row[bank] == row)):
                        with m.If((rw_wait[bank] == 0) & ~req.write & room):
                            issue(Command.READ, bank, col_addr)
                            m.d.comb += [self.cmd.ready.eq(1), read_now.eq(1)]
                            at_least(write_wait, t.cas_latency + 2)
                        with m.Elif((rw_wait[bank] == 0) & req.write & (write_wait == 0)):
                            issue(Command.WRITE, bank, col_addr)
                            m.d.comb += self.cmd.ready.eq(1)
                            m.d.sync += [self.pins.dq_o.eq(req.data), self.pins.dq_oe.eq(1)]
                            at_least(pre_wait[bank], t.t_wr)
                    with m.Elif(is_open.bit_select(bank, 1)):
                        with m.If(pre_wait[bank] == 0):
                            issue(Command.PRECHARGE, bank)
                            m.d.sync += is_open.bit_select(bank, 1).eq(0)
                            at_least(act_wait[bank], t.t_rp)
                    with m.Elif((act_wait[bank] == 0) & (rrd_wait == 0)):
                        issue(Command.ACTIVE, bank, row)
                        m.d.sync += [is_open.bit_select(bank, 1).eq(1),
                                     open_row[bank].eq(row)]
                        at_least(rw_wait[bank], t.t_rcd)
                        at_least(pre_wait[bank], t.t_ras)
                        at_least(act_wait[bank], t.t_rc)
                        at_least(rrd_wait, t.t_rrd)
            with m.State("CLOSE_ALL"):
                # every bank prechargeable and the bus quiet: PRECHARGE all, then refresh
                can_close = Signal()
                m.d.comb += can_close.eq((Cat(*(w == 0 for w in pre_wait)) == (1 << banks) - 1)
                                         & (any_wait == 0))
                with m.If(can_close):
                    issue(Command.PRECHARGE, addr=all_banks)
                    m.d.sync += is_open.eq(0)
                    for b in range(banks):
                        at_least(act_wait[b], t.t_rp)
                    at_least(any_wait, t.t_rp)
                    m.next = "REFRESH"
            with m.State("REFRESH"):
                with m.If((any_wait == 0)
                          & (Cat(*(w == 0 for w in act_wait)) == (1 << banks) - 1)):
                    refresh()
                    m.next = "IDLE"
        return m
