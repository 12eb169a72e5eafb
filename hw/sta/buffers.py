"""The STA's on-chip buffers: their shapes, and who drives which memory port when.

:func:`buffer_specs` gives each memory's word width, depth and write granularity;
:class:`~nmaccel.hw.sta.core.StaCore` builds the memories from it (they stay its direct
submodules, so the Verilog keeps the names ``cbuf``, ``wbuf``, ... that the cocotb bench's
backdoor reads), and the parts build their port signatures from it.

:class:`BufferPorts` arbitrates the ports that the host and the core share: the host reads and
writes the buffers through them while the core is idle, the core owns them while it runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from amaranth.hdl import Cat, Module, Mux, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from nmaccel.hw.sta.isa import padded_bits
from nmaccel.spec import sta_isa
from nmaccel.spec.config import StaConfig

__all__ = ["BufferPorts", "BufferSpec", "abuf_granularity", "buffer_specs", "read_signature",
           "slot_enables", "write_signature"]


@dataclass(frozen=True)
class BufferSpec:
    """One memory: ``width`` bits per word, ``depth`` words, write enables per ``granularity``
    bits (``None``: one enable per word)."""
    width: int
    depth: int
    granularity: int | None = None


def abuf_granularity(cfg: StaConfig) -> int:
    """Write granularity of ABUF and SBUF: one activation slot splits into whole granules, a
    32-bit host slice too."""
    return math.gcd(cfg.act_bits, 32)


def buffer_specs(cfg: StaConfig) -> dict[str, BufferSpec]:
    """Every memory of the core by name: the host-visible spaces of
    :data:`~nmaccel.spec.sta_isa.SPACES` (words padded to whole 32-bit slices where the host
    writes them), SBUF (softmax probabilities, ABUF's word format) and SCBUF (score banks)."""
    specs = {}
    for space in ("CBUF", "WBUF", "PBUF", "VBUF"):
        specs[space] = BufferSpec(padded_bits(sta_isa.space_width(cfg, space)),
                                  sta_isa.space_depth(cfg, space), 32)
    abuf_bits = padded_bits(sta_isa.space_width(cfg, "ABUF"))
    specs["ABUF"] = BufferSpec(abuf_bits, cfg.abuf_depth, abuf_granularity(cfg))
    specs["OBUF"] = BufferSpec(sta_isa.space_width(cfg, "OBUF"), cfg.obuf_depth)
    specs["CYCLOG"] = BufferSpec(32, cfg.cbuf_depth)
    specs["SBUF"] = BufferSpec(abuf_bits, cfg.sbuf_depth, abuf_granularity(cfg))
    specs["SCBUF"] = BufferSpec(cfg.cols * cfg.softmax_in_bits, cfg.scbuf_depth)
    return specs


def read_signature(cfg: StaConfig, name: str) -> memory.ReadPort.Signature:
    """Signature of a read port of memory ``name`` (a reader's port is ``In`` of this)."""
    spec = buffer_specs(cfg)[name]
    return memory.ReadPort.Signature(addr_width=ceil_log2(spec.depth), shape=unsigned(spec.width))


def write_signature(cfg: StaConfig, name: str) -> memory.WritePort.Signature:
    """Signature of the write port of memory ``name`` (a writer's port is ``In`` of this)."""
    spec = buffer_specs(cfg)[name]
    return memory.WritePort.Signature(addr_width=ceil_log2(spec.depth),
                                      shape=unsigned(spec.width), granularity=spec.granularity)


def slot_enables(slot_en, per_slot: int):
    """ABUF/SBUF write enables (``per_slot`` granules per activation slot) from one enable bit
    per slot."""
    return Cat(*[Mux(slot_en[i], (1 << per_slot) - 1, 0)[:per_slot] for i in range(len(slot_en))])


class BufferPorts(wiring.Component):
    """Arbiter of the buffer ports that the host and the core share (combinational, plus the
    address register of the CBUF read port).

    Parameters
    ----------
    config : StaConfig

    Attributes
    ----------
    busy : In(1)
        The core runs: the core's requesters own WBUF, ABUF, PBUF, VBUF and CBUF reads.
    vector_active : In(1)
        The vector sequencer owns the PBUF and VBUF read ports (else the drain unit and the
        post stage).
    first_fetch : In(1)
        START cycle: the controller presents the first command's CBUF address. It gets the
        CBUF port then unless ``host_accept`` (a host read accepted this cycle keeps it).
    host_accept : In(1)
        A host read request is accepted this cycle.
    cbuf_word_addr : Out
        Registered address of the CBUF read port: the address of the word now on its data.
    cbuf_ctrl, cbuf_host, wbuf_mac, wbuf_host, abuf_mac, abuf_host, pbuf_vector, pbuf_drain,
    pbuf_host, vbuf_vector, vbuf_post, vbuf_host : Out(ReadPort.Signature)
        Read requests (the requester's port is ``In`` of the signature); every requester sees
        the memory's data.
    vbuf_post_w, vbuf_vector_w, vbuf_host_w, abuf_post_w, abuf_vector_w, abuf_host_w :
    Out(WritePort.Signature)
        Write requests, in priority order per memory: the post stage, then the vector
        sequencer (each writes when any of its enables is set), else the host. A core write to
        VBUF enables the whole word but replaces only its ``cols · vec_bits`` lane bits: the
        padding bits take the host port's data of that cycle.
    cbuf, wbuf, abuf, pbuf, vbuf : In(ReadPort.Signature)
        The memories' shared read ports.
    vbuf_w, abuf_w : In(WritePort.Signature)
        The memories' write ports.

    Latency 0 (``cbuf_word_addr``: 1 cycle); no state besides ``cbuf_word_addr``.
    """

    def __init__(self, config: StaConfig) -> None:
        StaConfig.require(config)
        self.config = config
        rd = {name: read_signature(config, name) for name in ("CBUF", "WBUF", "ABUF", "PBUF",
                                                              "VBUF")}
        wr = {name: write_signature(config, name) for name in ("VBUF", "ABUF")}
        members = {
            "busy": In(1), "vector_active": In(1), "first_fetch": In(1), "host_accept": In(1),
            "cbuf_word_addr": Out(rd["CBUF"].members["addr"].shape),
        }
        requesters = {"CBUF": ("ctrl", "host"), "WBUF": ("mac", "host"),
                      "ABUF": ("mac", "host"), "PBUF": ("vector", "drain", "host"),
                      "VBUF": ("vector", "post", "host")}
        for name, who in requesters.items():
            members.update({f"{name.lower()}_{w}": Out(rd[name]) for w in who})
        for name in ("VBUF", "ABUF"):
            members.update({f"{name.lower()}_{w}_w": Out(wr[name])
                            for w in ("post", "vector", "host")})
        members.update({name.lower(): In(rd[name]) for name in rd})
        members.update({f"{name.lower()}_w": In(wr[name]) for name in wr})
        super().__init__(members)

    def elaborate(self, platform) -> Module:
        m = Module()
        lane_bits = self.config.cols * self.config.vec_bits
        busy, vector = self.busy, self.vector_active

        # Read data goes to every requester of a port.
        for name, ports in {"cbuf": ("ctrl", "host"), "wbuf": ("mac", "host"),
                            "abuf": ("mac", "host"), "pbuf": ("vector", "drain", "host"),
                            "vbuf": ("vector", "post", "host")}.items():
            for who in ports:
                m.d.comb += getattr(self, f"{name}_{who}").data.eq(getattr(self, name).data)

        # CBUF: the host's address only while idle, except in the START cycle if no host read
        # is accepted then.
        m.d.comb += self.cbuf.addr.eq(self.cbuf_ctrl.addr)
        with m.If(~busy & ~(self.first_fetch & ~self.host_accept)):
            m.d.comb += self.cbuf.addr.eq(self.cbuf_host.addr)
        m.d.sync += self.cbuf_word_addr.eq(self.cbuf.addr)
        m.d.comb += [
            self.wbuf.addr.eq(Mux(busy, self.wbuf_mac.addr, self.wbuf_host.addr)),
            self.abuf.addr.eq(Mux(busy, self.abuf_mac.addr, self.abuf_host.addr)),
            self.pbuf.addr.eq(Mux(busy, Mux(vector, self.pbuf_vector.addr, self.pbuf_drain.addr),
                                  self.pbuf_host.addr)),
            self.vbuf.addr.eq(Mux(busy, Mux(vector, self.vbuf_vector.addr, self.vbuf_post.addr),
                                  self.vbuf_host.addr)),
        ]

        # VBUF writes: post stage, vector sequencer, host.
        post, vec, host = self.vbuf_post_w, self.vbuf_vector_w, self.vbuf_host_w
        post_on = post.en.any()
        m.d.comb += [self.vbuf_w.addr.eq(host.addr), self.vbuf_w.data.eq(host.data),
                     self.vbuf_w.en.eq(host.en)]
        with m.If(post_on | vec.en.any()):
            m.d.comb += [self.vbuf_w.addr.eq(Mux(post_on, post.addr, vec.addr)),
                         self.vbuf_w.en.eq(-1),
                         self.vbuf_w.data[:lane_bits].eq(Mux(post_on, post.data[:lane_bits],
                                                             vec.data[:lane_bits]))]

        # ABUF writes: post stage, vector sequencer, host.
        post, vec, host = self.abuf_post_w, self.abuf_vector_w, self.abuf_host_w
        post_on = post.en.any()
        m.d.comb += [self.abuf_w.addr.eq(host.addr), self.abuf_w.data.eq(host.data),
                     self.abuf_w.en.eq(host.en)]
        with m.If(post_on | vec.en.any()):
            m.d.comb += [self.abuf_w.addr.eq(Mux(post_on, post.addr, vec.addr)),
                         self.abuf_w.data.eq(Mux(post_on, post.data, vec.data)),
                         self.abuf_w.en.eq(Mux(post_on, post.en, vec.en))]
        return m
