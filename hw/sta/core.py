"""``StaCore``: the STA MAC array, on-chip attention and vector unit, buffers, controller and
host port, wired from their parts.

Block diagram (parts in brackets, each in its own module)::

    host wr/rd ─► [HostPort] ─► CBUF WBUF ABUF PBUF VBUF                  OBUF CYCLOG ─► host rd
                                  │    │  ▲ │   │    │ ▲                     ▲      ▲
             [StaController] ─────┴────┤  │ ├───┤    │ │                     │  [PerfCounters]
             (fetch, decode, checks,   ▼  │ ▼   ▼    │ │                     │
              sync, tiling)        [MacPath: array, drain] ──► [PostStage: GELU | residual add]
                                       ▲ (A: ABUF|SBUF, W: WBUF|ABUF)      │
                                       │                                   ├─► OBUF/VBUF/ABUF
                                     SBUF ◄─ [AttentionMover: reader, StreamingSoftmax,
                                                 writer] ◄─ SCBUF ◄────────┘
             [VectorSequencer]: VBUF ─► LayerNormUnit | requant ─► VBUF (in place) + ABUF

Memories and the host address map are those of :mod:`nmaccel.spec.sta_isa`. SCBUF (scores,
two banks) and SBUF (probabilities, two blocks) are internal: attention scores never reach
host-visible memory. The memories are built here, from
:func:`~nmaccel.hw.sta.buffers.buffer_specs`, as direct submodules of the core: the generated
Verilog keeps them as arrays named ``cbuf``, ``wbuf``, ``abuf``, ``pbuf``, ``vbuf``, ``obuf``,
``cyclog``, ``sbuf``, ``scbuf`` in the top module, which the cocotb bench's backdoor loads and
reads. :class:`~nmaccel.hw.sta.buffers.BufferPorts` decides who drives the ports that the host
and the core share; the other ports connect straight to their one user.

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
    **FETCH** (a core with external memory, ``StaConfig.sdram_mhz``): the weight-fetch engine
    copies WBUF and PBUF entries from the SDRAM while later commands run (not to be confused
    with the controller's FETCH *state*, which reads a command word from CBUF).

Synchronisation (flags in the command, set by the compiler)
    ``barrier``: wait until the array and drain are empty (the command reads what an earlier
    command wrote). Post-ops and vector commands always wait. ``wait_sm``: 1 wait until every
    softmax block is written to SBUF, 2 until at most one is outstanding. A softmax GEMM
    waits until its score bank is free.

Controller timing per command: FETCH, DECODE1, DECODE2, CHECK, SYNC (≥ 1 cycle: the waits
above), [PARAM1, PARAM2 for post-ops and vector commands], then one beat per cycle, then NEXT.
The last beat of a tile waits while the previous tile's last beat is fewer than ``R`` cycles
old (the drain reads the shadow one row per cycle). After the last command the core waits for
the array, drain, post-op and softmax pipelines to empty. FETCH takes one cycle more only when
a host read is accepted in the very cycle of the START write (the read keeps the CBUF port).
:mod:`nmaccel.model.sta_cycles` follows these rules and is held to the RTL by tests.

Errors (CSR STATUS, codes in :data:`nmaccel.spec.sta_isa.ERRORS`) stop the run.

Ports
    ``wr``      In  stream of ``{addr, data}``: 32-bit host writes (ready, except WBUF/PBUF
                writes while the fetch engine works and SDRAM writes while running or busy).
    ``rd``      In  stream of ``{addr}``: host read requests; spaces the controller uses
                (CBUF, WBUF, ABUF, PBUF, VBUF) are served only while idle.
    ``rd_data`` Out stream of 32-bit read data, one per request, in order.
    ``busy``, ``done``, ``error`` Out: run state (``done``/``error`` stay until the next START).
    ``sdram``   Out :func:`~nmaccel.hw.common.sdram.pins_signature` (external memory only): the
                SDRAM controller's chip pins. The host writes the SDRAM through CSRs
                EXT_ADDR/EXT_DATA/EXT_WORD while idle, after STATUS says ``ext_ready``.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, unsigned
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out, connect, flipped

from nmaccel.hw.common.ebr import RegisteredReadPort
from nmaccel.hw.common.sdram import SdramController, pins_signature
from nmaccel.hw.sta.attention import AttentionMover
from nmaccel.hw.sta.buffers import BufferPorts, buffer_specs
from nmaccel.hw.sta.controller import StaController
from nmaccel.hw.sta.counters import PerfCounters
from nmaccel.hw.sta.ext_writer import ExtWriter
from nmaccel.hw.sta.fetch import WeightFetch
from nmaccel.hw.sta.host_port import HOST_WRITE_SPACES, HostPort
from nmaccel.hw.sta.isa import read_layout, write_layout
from nmaccel.hw.sta.layouts import fetch_max_entries, fetch_targets
from nmaccel.hw.sta.mac_path import MacPath
from nmaccel.hw.sta.post import PostStage
from nmaccel.hw.sta.sequencer import VectorSequencer
from nmaccel.spec import sta_timing
from nmaccel.spec.config import StaConfig

__all__ = ["StaCore"]


class StaCore(wiring.Component):
    """The STA engine with buffers and a host port (see the module docstring).

    Parameters
    ----------
    config : StaConfig

    Attributes
    ----------
    array_latency : int
        Cycles from a beat at the array's inputs to its sums in the PE accumulators.
    capture_delay : int
        Cycles from a beat's issue (read address) to the array's ``captured`` pulse.
    post_latency : int
        Cycles from the drain unit's output to the buffer write (post-op pipeline).
    """

    def __init__(self, config: StaConfig) -> None:
        StaConfig.require(config)
        self.config = config
        self.array_latency = 1 + sta_timing.pe_latency(config)
        self.capture_delay = sta_timing.capture_delay(config)
        self.post_latency = sta_timing.post_latency(config)
        super().__init__({
            "wr": In(stream.Signature(write_layout(config))),
            "rd": In(stream.Signature(read_layout(config))),
            "rd_data": Out(stream.Signature(unsigned(32))),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(1),
            **({"sdram": Out(pins_signature(config.sdram_timing))}
               if config.sdram_timing is not None else {}),
        })

    def _memories(self, m: Module) -> dict:
        """The memories as submodules named after them; their ports, by user."""
        specs = buffer_specs(self.config)
        mems = {}
        for name, spec in specs.items():
            mems[name] = memory.Memory(shape=unsigned(spec.width), depth=spec.depth, init=[])
            m.submodules[name.lower()] = mems[name]
        ports = {f"{name}_wr": mems[name].write_port(granularity=specs[name].granularity)
                 for name in HOST_WRITE_SPACES}
        ports.update({f"{name}_rd": mems[name].read_port()
                      for name in ("VBUF", "ABUF", "OBUF", "CYCLOG")})
        ports["ABUF_rd_w"] = mems["ABUF"].read_port()          # W operand from ABUF
        # The buffers only the host port (and the weight-fetch engine) write, the core only
        # reads: read through RegisteredReadPort, so Yosys puts no read-during-write logic
        # after their block RAMs. A host write of the very word the core reads in that cycle
        # (a race in the host's program either way) reads as undefined on the FPGA, as the
        # old word in simulation.
        for name, port in (("CBUF", "CBUF_rd"), ("WBUF", "WBUF_rd"), ("PBUF", "PBUF_rd"),
                           ("PBUF", "PBUF_rd_params")):     # the controller's parameters
            ports[port] = RegisteredReadPort(mems[name])
            m.submodules[port.lower()] = ports[port]
        for name in ("OBUF", "CYCLOG"):
            ports[f"{name}_wr"] = mems[name].write_port()
        for name in ("SBUF", "SCBUF"):
            ports[f"{name}_wr"] = mems[name].write_port(granularity=specs[name].granularity)
            ports[f"{name}_rd"] = mems[name].read_port()
        return ports

    def _weight_writes(self, m: Module, host, ctrl, counters, mem) -> None:
        """WBUF and PBUF writes: the host's, or, with external memory, the weight-fetch
        engine's (SDRAM controller → engine → buffers; host writes of WBUF/PBUF wait while
        the engine works); with external memory also the host's SDRAM writes (CSR EXT_*,
        :class:`~nmaccel.hw.sta.ext_writer.ExtWriter`)."""
        cfg, t = self.config, self.config.sdram_timing
        if t is None:
            for name in ("WBUF", "PBUF"):
                connect(m, getattr(host, f"{name.lower()}_wr"), mem[f"{name}_wr"])
            m.d.comb += host.status.ext_ready.eq(1)
            return
        m.submodules.sdram = sdram = SdramController(t)
        m.submodules.fetch = fetch = WeightFetch(t, fetch_targets(cfg), fetch_max_entries(cfg))
        m.submodules.ext_writer = writer = ExtWriter(t)
        connect(m, host.ext_set_addr, writer.set_addr)
        connect(m, host.ext_data, writer.data)
        m.d.comb += host.ext_addr.eq(writer.addr)
        # SDRAM requests: the host's writes (only while idle) before the engine's reads
        with m.If(writer.mem.valid):
            m.d.comb += [sdram.cmd.valid.eq(1), sdram.cmd.payload.eq(writer.mem.payload),
                         writer.mem.ready.eq(sdram.cmd.ready)]
        with m.Else():
            m.d.comb += [sdram.cmd.valid.eq(fetch.mem.valid),
                         sdram.cmd.payload.eq(fetch.mem.payload),
                         fetch.mem.ready.eq(sdram.cmd.ready)]
        connect(m, sdram.rdata, fetch.mem_rdata)
        connect(m, sdram.pins, flipped(self.sdram))
        connect(m, ctrl.fetch, fetch.req)
        m.d.comb += [ctrl.fetch_busy.eq(fetch.busy), host.write_hold.eq(fetch.busy),
                     host.status.ext_ready.eq(sdram.ready),
                     counters.fetch_busy.eq(fetch.busy), counters.fetch_wait.eq(ctrl.fetch_wait)]
        for name in ("WBUF", "PBUF"):
            port, by_host = mem[f"{name}_wr"], getattr(host, f"{name.lower()}_wr")
            by_fetch = getattr(fetch, f"{name.lower()}_wr")
            with m.If(by_fetch.valid):
                m.d.comb += [port.addr.eq(by_fetch.payload.addr),
                             port.data.eq(by_fetch.payload.data),
                             port.en.eq(Const(-1, len(port.en)))]
            with m.Else():
                m.d.comb += [port.addr.eq(by_host.addr), port.data.eq(by_host.data),
                             port.en.eq(by_host.en)]

    def elaborate(self, platform) -> Module:
        m = Module()
        cfg = self.config
        mem = self._memories(m)
        m.submodules.host = host = HostPort(cfg)
        m.submodules.ports = ports = BufferPorts(cfg)
        m.submodules.controller = ctrl = StaController(cfg)
        m.submodules.mac = mac = MacPath(cfg)
        m.submodules.post = post = PostStage(cfg)
        m.submodules.attention = attention = AttentionMover(cfg)
        m.submodules.vector = vector = VectorSequencer(cfg)
        m.submodules.perf = counters = PerfCounters(cfg)
        status, cmd, start = ctrl.status, ctrl.cmd, host.start.valid

        # Host port: streams, status, counters; buffers straight or through the arbiter.
        connect(m, flipped(self.wr), host.wr)
        connect(m, flipped(self.rd), host.rd)
        connect(m, host.rd_data, flipped(self.rd_data))
        m.d.comb += [self.busy.eq(status.busy), self.done.eq(status.done),
                     self.error.eq(status.error), host.status.eq(status), host.count.eq(ctrl.count),
                     host.counters.eq(counters.counters), ports.host_accept.eq(host.read_accept)]
        connect(m, host.cbuf_wr, mem["CBUF_wr"])
        self._weight_writes(m, host, ctrl, counters, mem)
        for name in ("OBUF", "CYCLOG"):
            connect(m, getattr(host, f"{name.lower()}_rd"), mem[f"{name}_rd"])
        for name in ("CBUF", "WBUF", "ABUF", "PBUF", "VBUF"):
            connect(m, getattr(host, f"{name.lower()}_rd"), getattr(ports, f"{name.lower()}_host"))
            connect(m, getattr(ports, name.lower()), mem[f"{name}_rd"])
        for name in ("VBUF", "ABUF"):
            connect(m, getattr(host, f"{name.lower()}_wr"),
                    getattr(ports, f"{name.lower()}_host_w"))
            connect(m, getattr(ports, f"{name.lower()}_w"), mem[f"{name}_wr"])

        # Controller, MAC path, post stage.
        connect(m, host.start, ctrl.start)
        connect(m, ctrl.cbuf, ports.cbuf_ctrl)
        connect(m, ctrl.pbuf, mem["PBUF_rd_params"])
        connect(m, ctrl.beats, mac.beats)
        connect(m, mac.wbuf, ports.wbuf_mac)
        connect(m, mac.abuf, ports.abuf_mac)
        connect(m, mac.abuf_w, mem["ABUF_rd_w"])
        connect(m, mac.sbuf, mem["SBUF_rd"])
        connect(m, mac.pbuf, ports.pbuf_drain)
        connect(m, mac.rows, post.rows)
        connect(m, post.vbuf_rd, ports.vbuf_post)
        connect(m, post.obuf_wr, mem["OBUF_wr"])
        connect(m, post.vbuf_wr, ports.vbuf_post_w)
        connect(m, post.abuf_wr, ports.abuf_post_w)
        connect(m, post.scbuf_wr, mem["SCBUF_wr"])
        m.d.comb += [
            ports.busy.eq(status.busy), ports.first_fetch.eq(ctrl.first_fetch),
            ctrl.cbuf_word_addr.eq(ports.cbuf_word_addr),
            mac.mode.eq(cmd.mode), mac.wsrc.eq(cmd.wsrc), mac.asrc.eq(cmd.asrc),
            mac.clear_err.eq(start), ctrl.meta_err.eq(mac.meta_err),
            ctrl.mac_busy.eq(mac.busy), ctrl.post_busy.eq(post.busy),
            post.params.eq(ctrl.params),
        ]

        # Attention data movement.
        connect(m, ctrl.claims, attention.claims)
        connect(m, post.bank_filled, attention.bank_filled)
        connect(m, attention.scbuf_rd, mem["SCBUF_rd"])
        connect(m, attention.sbuf_wr, mem["SBUF_wr"])
        m.d.comb += [attention.start.eq(start), ctrl.bank_free.eq(attention.bank_free),
                     ctrl.claimed_bank.eq(attention.claimed_bank),
                     ctrl.softmax_pending.eq(attention.pending),
                     ctrl.softmax_busy.eq(attention.busy),
                     ctrl.softmax_full.eq(attention.bank_full)]

        # Vector sequencer.
        connect(m, vector.vbuf_rd, ports.vbuf_vector)
        connect(m, vector.pbuf_rd, ports.pbuf_vector)
        connect(m, vector.vbuf_wr, ports.vbuf_vector_w)
        connect(m, vector.abuf_wr, ports.abuf_vector_w)
        m.d.comb += [vector.go.eq(ctrl.vector_go), ctrl.vector_done.eq(vector.done),
                     vector.cmd.eq(cmd), vector.params.eq(ctrl.params),
                     ports.vector_active.eq(vector.active)]

        # Counters.
        connect(m, counters.cyclog_wr, mem["CYCLOG_wr"])
        m.d.comb += [
            counters.clear.eq(start), counters.busy.eq(status.busy),
            counters.issue.eq(ctrl.beats.valid), counters.stall.eq(ctrl.stall),
            counters.softmax_busy.eq(attention.busy), counters.softmax_wait.eq(ctrl.softmax_wait),
            counters.barrier_wait.eq(ctrl.barrier_wait),
            counters.command_done.eq(ctrl.command_done),
            counters.op.eq(cmd.op), counters.mode.eq(cmd.mode), counters.pc.eq(ctrl.pc),
        ]
        return m
