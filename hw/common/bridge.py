"""``UartBridge``: the framed UART protocol of :mod:`nmaccel.spec.uart_protocol` to the STA
core's host streams.

Block diagram::

    rx ─► UartRx ─► parser (SYNC CMD LEN PAYLOAD CRC, inter-byte timeout) ─► word buffer
                                                                            │
    tx ◄─ UartTx ◄─ reply (SYNC CMD LEN STATUS DATA CRC) ◄─ rd_data   wr ◄──┘, rd ─►

A request is checked whole (CRC, command, length, address range) before anything reaches the
core, so a corrupted WRITE never writes. WRITE payload words wait in a ``MAX_WORDS`` x 32
buffer, then go out on ``wr`` (from registers) at one word per 3 cycles; READ issues one ``rd``
request per word (from registers) and sends each answer as it comes. Every request gets one
reply frame. A frame that stops for ``timeout`` cycles gets a TIMEOUT reply; a UART framing
error inside a frame skips bytes until the line is quiet for ``timeout`` cycles, then gets a
FRAMING reply. The parser then hunts for SYNC again, so the bridge never hangs on bad input.
The host sends a request only after the previous reply (request/reply, no pipelining): while a
reply goes out the receiver holds one byte and drops further ones (``UartRx.overrun``).
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from nmaccel.hw.common.counter import Counter
from nmaccel.hw.common.ebr import registered_read
from nmaccel.hw.common.uart import UartRx, UartTx, check_divisor
from nmaccel.spec import uart_protocol as proto
from nmaccel.spec.config import ConvConfig, StaConfig

__all__ = ["UartBridge", "check_timeout", "crc_next", "default_timeout", "host_read_layout",
           "host_write_layout"]


def host_write_layout(addr_bits: int) -> data.StructLayout:
    """A host write request: 32-bit ``data`` to host address ``addr``."""
    return data.StructLayout({"addr": unsigned(addr_bits), "data": unsigned(32)})


def host_read_layout(addr_bits: int) -> data.StructLayout:
    """A host read request for host address ``addr`` (answered on the read-data stream)."""
    return data.StructLayout({"addr": unsigned(addr_bits)})


def default_timeout(divisor: int) -> int:
    """Default inter-byte timeout: 256 byte times (``256 * 10 * divisor`` cycles)."""
    return 256 * 10 * divisor


def check_timeout(timeout, divisor: int) -> int:
    """``timeout`` validated (``None``: :func:`default_timeout`); needs ``divisor`` valid."""
    if timeout is None:
        return default_timeout(divisor)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 20 * divisor:
        raise ValueError(f"timeout must be an integer >= 2 byte times "
                         f"(20 * divisor = {20 * divisor} cycles), not {timeout!r}")
    return timeout


def crc_next(crc, byte):
    """CRC register (:func:`nmaccel.spec.uart_protocol.crc16_update`) after ``byte``, as a
    combinational Amaranth expression. The update is linear over GF(2) in ``(crc, byte)``, so
    each output bit is the XOR of the input bits whose unit vector
    :func:`~nmaccel.spec.uart_protocol.crc16_update` maps onto it."""
    width = proto.CRC_WIDTH
    inputs = ([(crc[i], proto.crc16_update(1 << i, 0)) for i in range(width)]
              + [(byte[i], proto.crc16_update(0, 1 << i)) for i in range(8)])
    bits = []
    for j in range(width):
        taps = [bit for bit, column in inputs if (column >> j) & 1]
        term = taps[0]
        for t in taps[1:]:
            term = term ^ t
        bits.append(term)
    return Cat(*bits)


class UartBridge(wiring.Component):
    """UART framed-protocol master for a design's host port: :class:`~nmaccel.hw.sta.core.
    StaCore`'s or :class:`~nmaccel.hw.conv.host.ConvHost`'s.

    Parameters: ``config`` (:class:`~nmaccel.spec.config.StaConfig` or
    :class:`~nmaccel.spec.config.ConvConfig`: sizes the address, gives the PING identity and
    the CSR START address), ``divisor`` (clock cycles per UART bit), ``timeout`` (inter-byte
    timeout in cycles, at least 2 byte times; default :func:`default_timeout`), ``timer_dsp``
    (the timer's :class:`~nmaccel.hw.common.counter.Counter` is an SB_MAC16 on an iCE40, for a
    design that leaves one free; default: in logic).

    Ports
        ``rx`` In(1), ``tx`` Out(1): the UART pins (8N1).
        ``wr`` Out(stream of ``write_layout``), ``rd`` Out(stream of ``read_layout``),
        ``rd_data`` In(stream of 32 bits): connect to the core's ``wr``/``rd``/``rd_data``
        (``wiring.connect(m, bridge.wr, core.wr)``, ...).
    Latency: a reply starts 2 cycles after the request's CRC byte (after the WRITE words
    are written); the link itself is the bottleneck (10 bit times per byte).
    """

    def __init__(self, config: StaConfig | ConvConfig, divisor: int,
                 timeout: int | None = None, timer_dsp: bool = False) -> None:
        self.addr_bits = proto.host_addr_bits(config)    # (a TypeError for any other config)
        self.config = config
        self.divisor = check_divisor(divisor)
        self.timeout = check_timeout(timeout, divisor)
        self.id_bytes = proto.id_bytes(config)
        self.timer_dsp = bool(timer_dsp)
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "wr": Out(stream.Signature(host_write_layout(self.addr_bits))),
            "rd": Out(stream.Signature(host_read_layout(self.addr_bits))),
            "rd_data": In(stream.Signature(unsigned(32))),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        cfg = self.config
        AB = self.addr_bits
        S = proto.STATUS
        m.submodules.uart_rx = urx = UartRx(self.divisor)
        m.submodules.uart_tx = utx = UartTx(self.divisor)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx)]
        m.submodules.words = words = memory.Memory(shape=unsigned(32), depth=proto.MAX_WORDS,
                                                   init=[])
        w_port = words.write_port(granularity=8)         # each payload byte as it arrives
        r_port = registered_read(m, words, "r_port")     # (PAYLOAD writes; WR_LOAD reads)

        rx_byte = urx.data.payload
        got = Signal()                                   # a byte is taken this cycle
        m.d.comb += got.eq(urx.data.valid & urx.data.ready)

        cmd = Signal(8)                                  # the request's CMD byte (echoed)
        code = cmd[:proto.CODE_BITS]                     # its command code; the rest: the tag
        length = Signal(8)
        idx = Signal(8)                                  # payload byte index
        arg = Signal(32)                                 # payload bytes 0..3 (addr / count)
        cnt = Signal(8)                                  # payload byte 4 (READ count)
        crc = Signal(proto.CRC_WIDTH)
        crc_byte = Signal(8)                             # byte entering the CRC this cycle
        crc_after = Signal(proto.CRC_WIDTH)
        crc_lo_ok = Signal()                             # the CRC's first byte matched
        crc_ok = Signal()
        status = Signal(8)
        rlen = Signal(8)                                 # reply LEN byte
        widx = Signal(range(proto.MAX_WORDS + 1))
        bpos = Signal(2)
        rword = Signal(32)
        # the inter-byte timer (``timer_dsp``: one SB_MAC16 on an iCE40)
        m.submodules.timer = timer_ctr = Counter(bits_for(self.timeout), dsp=self.timer_dsp)
        timer = timer_ctr.value
        timed_out = Signal()
        m.d.comb += timed_out.eq(timer == self.timeout - 1)

        off = Signal(8)
        m.d.comb += off.eq(idx - 4)
        m.d.comb += [w_port.addr.eq(off[2:]), w_port.data.eq(rx_byte.replicate(4))]
        m.d.comb += r_port.addr.eq(widx)

        n_write = Signal(8)
        m.d.comb += n_write.eq((length - 4) >> 2)
        n_words = Signal(8)
        m.d.comb += n_words.eq(Mux(code == proto.WRITE, n_write, cnt))
        # the frame's last word, arg + n_words - 1, is past the map when arg has bits above the
        # address or the sum of its address bits carries out (n_words >= 1 wherever it matters:
        # the length is checked first); an AB-bit adder, not a 34-bit one
        end_low = Signal(AB + 1)
        m.d.comb += end_low.eq(arg[:AB] + (n_words - 1)[:8])
        # registered (the frame's fields settle at least two received bytes, the CRC, before
        # DECIDE and WR_SEND read them): length → n_words → end_low → verdict → the reply
        # state was the iCE40UP5K conv build's critical path (45 ns)
        addr_over = Signal()                             # the frame's last word is past the map
        last_widx = Signal(8)                            # WRITE: index of the last word
        m.d.sync += [addr_over.eq(arg[AB:].any() | end_low[AB]), last_widx.eq(n_write - 1)]

        length_ok = Signal()
        with m.Switch(code):
            with m.Case(proto.PING):
                m.d.comb += length_ok.eq(length == 0)
            with m.Case(proto.WRITE):
                m.d.comb += length_ok.eq((length >= 8) & (length[:2] == 0))
            with m.Case(proto.READ):
                m.d.comb += length_ok.eq((length == 5) & (cnt >= 1) & (cnt <= proto.MAX_WORDS))
            with m.Case(proto.START):
                m.d.comb += length_ok.eq(length == 4)
        known = Signal()
        m.d.comb += known.eq((code == proto.PING) | (code == proto.WRITE) | (code == proto.READ)
                             | (code == proto.START))
        uses_addr = Signal()
        m.d.comb += uses_addr.eq((code == proto.WRITE) | (code == proto.READ))
        # The verdict on the frame's fields is registered too (they settle a whole CRC byte
        # before DECIDE): length → length check / addr_over → verdict → DECIDE's register
        # loads was the 101.6 MHz ULX3S conv build's critical path (9.8 ns); DECIDE only
        # adds the CRC's.
        fields_verdict = Signal(8)
        with m.If(~known):
            m.d.sync += fields_verdict.eq(S["COMMAND"])
        with m.Elif(~length_ok):
            m.d.sync += fields_verdict.eq(S["LENGTH"])
        with m.Elif(uses_addr & addr_over):
            m.d.sync += fields_verdict.eq(S["ADDRESS"])
        with m.Else():
            m.d.sync += fields_verdict.eq(S["OK"])
        verdict = Signal(8)
        m.d.comb += verdict.eq(Mux(crc_ok, fields_verdict, S["CRC"]))

        m.d.comb += crc_after.eq(crc_next(crc, crc_byte))

        # reply bytes
        id_rom = Array(Const(b, 8) for b in self.id_bytes)
        tx_byte = Signal(8)
        tx_sent = Signal()
        m.d.comb += [utx.data.payload.eq(tx_byte), tx_sent.eq(utx.data.valid & utx.data.ready)]

        start_addr = proto.csr_address(cfg, "START")
        # ``wr`` comes from registers: no path from the word buffer or the parser's adders
        # into the core (the 85F build's critical path ran from the buffer to the controller)
        wr_valid = Signal()
        wr_addr = Signal.like(self.wr.payload.addr)
        wr_data = Signal(32)
        m.d.comb += [self.wr.valid.eq(wr_valid), self.wr.payload.addr.eq(wr_addr),
                     self.wr.payload.data.eq(wr_data)]
        # ``rd`` too (the address sum and the state decode fed the core's memory addresses:
        # the iCE40UP5K STA build's second-longest path)
        rd_valid = Signal()
        rd_addr = Signal.like(self.rd.payload.addr)
        m.d.comb += [self.rd.valid.eq(rd_valid), self.rd.payload.addr.eq(rd_addr)]
        word_addr = Signal.like(wr_addr)                 # the frame's word widx (one adder)
        m.d.comb += word_addr.eq(arg + widx)

        def receive_rules():
            """Shared by the receive states (later assignments win): a framing error skips
            the rest of the frame, silence for ``timeout`` cycles ends it with TIMEOUT."""
            with m.If(urx.framing_error):
                m.d.comb += w_port.en.eq(0)
                m.next = "DRAIN"
            with m.Elif(timed_out & ~got):
                m.d.sync += [status.eq(S["TIMEOUT"]), rlen.eq(1)]
                m.next = "T_SYNC"

        with m.FSM(name="bridge") as fsm:
            with m.State("SYNC"):
                with m.If(got & (rx_byte == proto.SYNC)):
                    m.d.sync += [cmd.eq(0), crc.eq(proto.CRC_INIT)]
                    m.next = "CMD"
            with m.State("CMD"):
                with m.If(got):
                    m.d.sync += [cmd.eq(rx_byte), crc.eq(crc_after)]
                    m.next = "LEN"
                receive_rules()
            with m.State("LEN"):
                with m.If(got):
                    m.d.sync += [length.eq(rx_byte), crc.eq(crc_after),
                                 idx.eq(0), cnt.eq(0)]
                    with m.If(rx_byte == 0):
                        m.next = "CRC"
                    with m.Else():
                        m.next = "PAYLOAD"
                receive_rules()
            with m.State("PAYLOAD"):
                with m.If(got):
                    m.d.sync += [crc.eq(crc_after), idx.eq(idx + 1)]
                    with m.If(idx < 4):
                        m.d.sync += arg.eq(Cat(arg[8:], rx_byte))
                    with m.Else():                    # byte off % 4 of word off // 4
                        m.d.comb += w_port.en.eq(Const(1, 4) << off[:2])
                    with m.If(idx == 4):
                        m.d.sync += cnt.eq(rx_byte)
                    with m.If(idx == length - 1):
                        m.next = "CRC"
                receive_rules()
            with m.State("CRC"):                  # CRC bytes, low byte first
                with m.If(got):
                    m.d.sync += crc_lo_ok.eq(rx_byte == crc[:8])
                    m.next = "CRC_HI"
                receive_rules()
            with m.State("CRC_HI"):
                with m.If(got):
                    m.d.sync += crc_ok.eq(crc_lo_ok & (rx_byte == crc[8:]))
                    m.next = "DECIDE"
                receive_rules()
            with m.State("DRAIN"):
                with m.If(timed_out & ~got):
                    m.d.sync += [status.eq(S["FRAMING"]), rlen.eq(1)]
                    m.next = "T_SYNC"

            with m.State("DECIDE"):
                m.d.sync += [status.eq(verdict), widx.eq(0), bpos.eq(0)]
                with m.If(verdict != S["OK"]):
                    m.d.sync += rlen.eq(1)
                    m.next = "T_SYNC"
                with m.Else():
                    with m.Switch(code):
                        with m.Case(proto.PING):
                            m.d.sync += rlen.eq(1 + len(self.id_bytes))
                            m.next = "T_SYNC"
                        with m.Case(proto.READ):
                            m.d.sync += rlen.eq(1 + 4 * cnt)
                            m.next = "T_SYNC"
                        with m.Case(proto.WRITE):
                            m.d.sync += rlen.eq(1)
                            m.next = "WR_LOAD"
                        with m.Case(proto.START):
                            m.d.sync += [rlen.eq(1), wr_valid.eq(1), wr_addr.eq(start_addr),
                                         wr_data.eq(arg)]
                            m.next = "START"

            with m.State("WR_LOAD"):         # buffer word ``widx`` appears on r_port next cycle
                m.next = "WR_REG"
            with m.State("WR_REG"):          # ... and goes into the ``wr`` register
                m.d.sync += [wr_valid.eq(1), wr_addr.eq(word_addr), wr_data.eq(r_port.data)]
                m.next = "WR_SEND"
            with m.State("WR_SEND"):
                with m.If(self.wr.ready):
                    m.d.sync += [wr_valid.eq(0), widx.eq(widx + 1)]
                    with m.If(widx == last_widx):
                        m.next = "T_SYNC"
                    with m.Else():
                        m.next = "WR_LOAD"
            with m.State("START"):
                with m.If(self.wr.ready):
                    m.d.sync += wr_valid.eq(0)
                    m.next = "T_SYNC"

            # ---- reply
            def send(byte, next_state, add_crc=True):
                m.d.comb += [utx.data.valid.eq(1), tx_byte.eq(byte)]
                with m.If(tx_sent):
                    if add_crc:
                        m.d.sync += crc.eq(crc_after)
                    m.next = next_state

            with m.State("T_SYNC"):
                m.d.sync += crc.eq(proto.CRC_INIT)
                send(proto.SYNC, "T_CMD", add_crc=False)
            with m.State("T_CMD"):
                send(cmd, "T_LEN")
            with m.State("T_LEN"):
                send(rlen, "T_STATUS")
            with m.State("T_STATUS"):
                send(status, "T_CRC")
                with m.If(tx_sent & (status == S["OK"])):
                    with m.If(code == proto.PING):
                        m.next = "T_ID"
                    with m.Elif(code == proto.READ):
                        m.next = "RD_REG"
            with m.State("T_ID"):
                send(id_rom[widx], "T_ID")
                with m.If(tx_sent):
                    m.d.sync += widx.eq(widx + 1)
                    with m.If(widx == len(self.id_bytes) - 1):
                        m.next = "T_CRC"
            with m.State("RD_REG"):          # the request goes into the ``rd`` register
                m.d.sync += [rd_valid.eq(1), rd_addr.eq(word_addr)]
                m.next = "RD_REQ"
            with m.State("RD_REQ"):
                with m.If(self.rd.ready):
                    m.d.sync += rd_valid.eq(0)
                    m.next = "RD_WAIT"
            with m.State("RD_WAIT"):
                m.d.comb += self.rd_data.ready.eq(1)
                with m.If(self.rd_data.valid):
                    m.d.sync += [rword.eq(self.rd_data.payload), bpos.eq(0)]
                    m.next = "T_WORD"
            with m.State("T_WORD"):
                send(rword[:8], "T_WORD")
                with m.If(tx_sent):
                    m.d.sync += [rword.eq(rword >> 8), bpos.eq(bpos + 1)]
                    with m.If(bpos == 3):
                        m.d.sync += widx.eq(widx + 1)
                        with m.If(widx == cnt - 1):
                            m.next = "T_CRC"
                        with m.Else():
                            m.next = "RD_REG"
            with m.State("T_CRC"):
                send(crc[:8], "T_CRC_HI", add_crc=False)
            with m.State("T_CRC_HI"):
                send(crc[8:], "SYNC", add_crc=False)

        m.d.comb += urx.data.ready.eq(fsm.ongoing("SYNC") | fsm.ongoing("CMD") | fsm.ongoing("LEN")
                                      | fsm.ongoing("PAYLOAD") | fsm.ongoing("CRC")
                                      | fsm.ongoing("CRC_HI")
                                      | fsm.ongoing("DRAIN"))
        m.d.comb += crc_byte.eq(Mux(urx.data.ready, rx_byte, tx_byte))
        with m.If(got | fsm.ongoing("SYNC") | urx.framing_error):
            m.d.comb += timer_ctr.clear.eq(1)
        with m.Elif(~timed_out):
            m.d.comb += timer_ctr.en.eq(1)
        return m

