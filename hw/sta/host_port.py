"""Host port of the STA core: 32-bit host writes and reads of the buffers and the CSRs.

The host address map is :mod:`nmaccel.spec.sta_isa`'s: ``(space << space_shift) | (entry <<
sub_bits) | sub``. Writes go straight to the buffers' write ports (32-bit slices of a word);
a write of CSR START while idle starts a run. Reads are answered in request order from the
buffers' read ports and the CSR multiplexer.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from nmaccel.hw.sta.buffers import read_signature, write_signature
from nmaccel.hw.sta.ext_writer import ext_data_layout
from nmaccel.hw.sta.isa import counters_layout, read_layout, status_layout, write_layout
from nmaccel.hw.sta.layouts import entry_bits, start_layout
from nmaccel.spec import sta_isa
from nmaccel.spec.config import StaConfig
from nmaccel.spec.sta_isa import CSR, SPACES

__all__ = ["HOST_READ_SPACES", "HOST_WRITE_SPACES", "SHARED_SPACES", "HostPort"]

#: Spaces the host writes (the others are read-only) and reads.
HOST_WRITE_SPACES = ("CBUF", "WBUF", "PBUF", "VBUF", "ABUF")
HOST_READ_SPACES = ("CBUF", "WBUF", "PBUF", "VBUF", "ABUF", "OBUF", "CYCLOG")
#: Spaces whose read ports the core uses while it runs: host reads of them wait until idle.
SHARED_SPACES = ("CBUF", "WBUF", "ABUF", "PBUF", "VBUF")


class HostPort(wiring.Component):
    """Host write decoder, host read state machine and CSR multiplexer.

    Parameters
    ----------
    config : StaConfig
    word_registers : bool
        Register the read ports' words before the slice and space are selected (the default,
        for block RAMs without output registers on the ECP5). Without them (the lean STA on an
        iCE40: hundreds of flip-flops less) the slice is selected straight from the read ports
        one cycle earlier; the latency is the same.

    Attributes
    ----------
    wr : In(stream.Signature(write_layout))
        Host writes: ready, except that writes of WBUF and PBUF wait while ``write_hold`` is
        high. A write of CSR START while ``status.busy`` is low is passed on as ``start``;
        other CSR writes are ignored.
    write_hold : In(1)
        The weight-fetch engine writes WBUF and PBUF (their host writes wait).
    ext_set_addr, ext_data : Out(stream)
        With external memory only: CSR EXT_ADDR writes (the address) and EXT_DATA / EXT_WORD
        writes (:func:`~nmaccel.hw.sta.ext_writer.ext_data_layout`) for the
        :class:`~nmaccel.hw.sta.ext_writer.ExtWriter`. Such writes wait while ``status.busy``
        and while ``ext_data.ready`` is low (the writer still issues the previous one).
    ext_addr : In
        With external memory only: the writer's address (CSR EXT_ADDR reads it).
    rd : In(stream.Signature(read_layout))
        Host read requests. Requests for :data:`SHARED_SPACES` are not accepted while
        ``status.busy``.
    rd_data : Out(stream.Signature(unsigned(32)))
        One word per request, in order.
    status : In(status_layout)
        CSR STATUS.
    count : In(32)
        CSR START (the command count of the last START).
    counters : In(counters_layout)
        The run counters (CSRs ``CYCLES`` ... ``BARRIER_WAIT``).
    start : Out(stream.Signature(start_layout, always_ready=True))
        START: the command count written, in the cycle of the write.
    read_accept : Out(1)
        A read request is accepted this cycle (its address is on the read ports).
    cbuf_rd, wbuf_rd, pbuf_rd, vbuf_rd, abuf_rd, obuf_rd, cyclog_rd : In(ReadPort.Signature)
        Read ports; the address is the request's entry whenever a request is presented.
    cbuf_wr, wbuf_wr, pbuf_wr, vbuf_wr, abuf_wr : In(WritePort.Signature)
        Write ports: address and data always from the write request (data replicated over the
        word's 32-bit slices), the enables of the addressed slice when the write is valid and
        the entry is within the buffer.

    Latency: a read request accepted in cycle ``t`` is answered on ``rd_data`` from cycle
    ``t + HOST_READ_LATENCY`` (:mod:`nmaccel.spec.sta_timing`): the read ports' words are
    registered as they leave the block RAMs, then the space's 32-bit slice is selected into
    the answer register, so no RAM output drives logic (on the ECP5 a DP16KD read without
    its output register is 5.5 ns clock to out). The answer holds until taken, and the
    next request is accepted in the cycle after. Throughput: one read per
    ``HOST_READ_LATENCY + 1`` cycles with ``rd_data`` always ready; one write per cycle.
    """

    def __init__(self, config: StaConfig, word_registers: bool = True) -> None:
        StaConfig.require(config)
        self.config = config
        self.word_registers = bool(word_registers)
        members = {
            "wr": In(stream.Signature(write_layout(config))),
            "rd": In(stream.Signature(read_layout(config))),
            "rd_data": Out(stream.Signature(unsigned(32))),
            "status": In(status_layout()),
            "count": In(32),
            "counters": In(counters_layout()),
            "start": Out(stream.Signature(start_layout(), always_ready=True)),
            "read_accept": Out(1),
            "write_hold": In(1),
        }
        t = config.sdram_timing
        if t is not None:
            members.update({
                "ext_set_addr": Out(stream.Signature(unsigned(t.addr_bits), always_ready=True)),
                "ext_data": Out(stream.Signature(ext_data_layout(t))),
                "ext_addr": In(t.addr_bits)})
        members.update({f"{sp.lower()}_rd": In(read_signature(config, sp))
                        for sp in HOST_READ_SPACES})
        members.update({f"{sp.lower()}_wr": In(write_signature(config, sp))
                        for sp in HOST_WRITE_SPACES})
        super().__init__(members)

    def _write_decode(self, m: Module) -> None:
        cfg, wr = self.config, self.wr
        shift = sta_isa.space_shift(cfg)
        space = wr.payload.addr[shift:]
        held = self.write_hold & ((space == SPACES["WBUF"]) | (space == SPACES["PBUF"]))
        csr_index = wr.payload.addr[:shift]
        if cfg.sdram_timing is not None:
            held = held | self._ext_writes(m, (space == SPACES["CSR"]) & wr.valid, csr_index)
        m.d.comb += wr.ready.eq(~held)
        for name in HOST_WRITE_SPACES:
            port = getattr(self, f"{name.lower()}_wr")
            sub_bits = sta_isa.sub_bits(cfg, name)
            entry = wr.payload.addr[sub_bits:shift]
            bits = entry_bits(cfg, name)
            in_range = (entry >> bits) == 0 if shift - sub_bits > bits else Const(1)
            slices = len(port.en)
            per_slice = slices * 32 // len(port.data)      # enable bits per 32-bit slice
            m.d.comb += [port.addr.eq(entry),
                         port.data.eq(Cat(*([wr.payload.data] * (len(port.data) // 32))))]
            with m.If(wr.valid & ~held & (space == SPACES[name]) & in_range):
                if slices == 1:
                    m.d.comb += port.en.eq(1)
                else:
                    m.d.comb += port.en.eq(Const((1 << per_slice) - 1, slices)
                                           << (wr.payload.addr[:sub_bits] * per_slice))
        m.d.comb += [
            self.start.valid.eq(wr.valid & (space == SPACES["CSR"])
                                & (wr.payload.addr[:shift] == CSR["START"]) & ~self.status.busy),
            self.start.payload.count.eq(wr.payload.data),
        ]

    def _ext_writes(self, m: Module, csr_write, index):
        """CSR EXT_ADDR / EXT_DATA / EXT_WORD writes to the SDRAM writer; returns the
        condition that holds such a write (running, or the writer still busy)."""
        t, wr = self.config.sdram_timing, self.wr
        ext = (index == CSR["EXT_ADDR"]) | (index == CSR["EXT_DATA"]) \
            | (index == CSR["EXT_WORD"])
        hold = csr_write & ext & (self.status.busy | ~self.ext_data.ready)
        go = csr_write & ~self.status.busy & self.ext_data.ready
        m.d.comb += [
            self.ext_set_addr.valid.eq(go & (index == CSR["EXT_ADDR"])),
            self.ext_set_addr.payload.eq(wr.payload.data),
            self.ext_data.valid.eq(go & ((index == CSR["EXT_DATA"])
                                         | (index == CSR["EXT_WORD"]))),
            self.ext_data.payload.data.eq(wr.payload.data),
            self.ext_data.payload.words.eq(Mux(index == CSR["EXT_DATA"],
                                               32 // t.data_bits, 1)),
        ]
        return hold

    def _csr_values(self) -> dict:
        values = {CSR["START"]: self.count, CSR["STATUS"]: self.status.as_value(),
                  CSR["CONFIG"]: Const(sta_isa.config_word(self.config), 32)}
        for name in sta_isa.COUNTERS:
            values[CSR[name]] = getattr(self.counters, name.lower())
        if self.config.sdram_timing is not None:
            values[CSR["EXT_ADDR"]] = self.ext_addr
        return values

    def _answer_slice(self, m: Module, answer, word, space: str, sub) -> None:
        """``answer`` ← the 32-bit slice ``sub`` of memory word ``word`` (0 beyond it)."""
        cfg = self.config
        slices = sta_isa.sub_words(cfg, space)
        width = len(word)
        padded = Cat(word, Const(0, slices * 32 - width)) if slices * 32 > width else word
        if slices == 1:
            m.d.sync += answer.eq(padded[:32])
            return
        with m.Switch(sub[:sta_isa.sub_bits(cfg, space)]):
            for k in range(slices):
                with m.Case(k):
                    m.d.sync += answer.eq(padded[32 * k:32 * (k + 1)])
            with m.Default():
                m.d.sync += answer.eq(0)

    def elaborate(self, platform) -> Module:
        m = Module()
        cfg, rd = self.config, self.rd
        shift = sta_isa.space_shift(cfg)
        self._write_decode(m)

        space = rd.payload.addr[shift:]
        for name in HOST_READ_SPACES:
            m.d.comb += getattr(self, f"{name.lower()}_rd").addr.eq(
                rd.payload.addr[sta_isa.sub_bits(cfg, name):shift])
        shared = Cat(*[space == SPACES[name] for name in SHARED_SPACES]).any()
        req_space = Signal(3)                    # the accepted request's space, sub and entry
        req_sub = Signal(8)
        req_entry = Signal(shift)
        answer = Signal(32)
        # the read ports' words are registered as they come out of the block RAMs (DATA), the
        # slice and space are selected from those registers (SELECT): no RAM output feeds logic
        ports = {name: getattr(self, f"{name.lower()}_rd").data for name in HOST_READ_SPACES}
        if self.word_registers:
            words = {name: Signal(len(data), name=f"{name.lower()}_word")
                     for name, data in ports.items()}
        else:
            words = ports

        def select():
            with m.Switch(req_space):
                for name in HOST_READ_SPACES:
                    with m.Case(SPACES[name]):
                        self._answer_slice(m, answer, words[name], name, req_sub)
                with m.Case(SPACES["CSR"]), m.Switch(req_entry):
                    for index, value in self._csr_values().items():
                        with m.Case(index):
                            m.d.sync += answer.eq(value)
                    with m.Default():
                        m.d.sync += answer.eq(0)
                with m.Default():
                    m.d.sync += answer.eq(0)

        with m.FSM(name="host_rd"):
            with m.State("ACCEPT"):
                m.d.comb += [rd.ready.eq(~(shared & self.status.busy)),
                             self.read_accept.eq(rd.valid & rd.ready)]
                with m.If(rd.valid & rd.ready):
                    m.d.sync += [req_space.eq(space), req_sub.eq(rd.payload.addr),
                                 req_entry.eq(rd.payload.addr[:shift])]
                    m.next = "DATA"
            with m.State("DATA"):
                if self.word_registers:
                    for name, word in words.items():
                        m.d.sync += word.eq(ports[name])
                else:
                    select()
                m.next = "SELECT"
            with m.State("SELECT"):
                if self.word_registers:
                    select()
                m.next = "RESP"
            with m.State("RESP"):
                m.d.comb += [self.rd_data.valid.eq(1), self.rd_data.payload.eq(answer)]
                with m.If(self.rd_data.ready):
                    m.next = "ACCEPT"
        return m
