"""``registered_read``: a synchronous read port that block RAM takes without extra logic.

An Amaranth synchronous read port (``read_port(domain="sync")``) that is not transparent
promises the old word when the same address is written in the same cycle. Yosys 0.70 maps it
to an iCE40 ``SB_RAM40_4K`` by emulating that promise around the block: the write's address,
data and enables are delayed a cycle and a bypass compares addresses and selects the word
(measured on a 512 × 32 memory with one write and one read port: 81 flip-flops and 43 LUTs
beside the 4 blocks). ``synth_ice40 -no-rw-check`` does not reach such ports, because Amaranth
emits them already synchronous.

``registered_read`` builds the same port from a combinational read port and a data register
(``reset_less``), and marks the memory ``no_rw_check``: Yosys merges the register into the
block's read port and leaves the collision undefined, with no logic around it (the same
memory: no flip-flop, 32 LUTs, the read mux over its two blocks of depth). In simulation the
port behaves as before: the register takes the word before the write's edge (the old word).
On the FPGA a read of the address being written in the same cycle is undefined, so use it
only where such a read is never used (every user states why).

Returns an object with ``addr`` (drive it) and ``data`` (the word at the address of the
previous cycle).

:class:`RegisteredReadPort` is the same port as a component with the signature of an Amaranth
synchronous read port (``addr`` and ``en`` in, ``data`` out; ``data`` keeps its word while
``en`` is low), so it connects wherever ``memory.read_port()`` did.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory, ReadPort

__all__ = ["RegisteredReadPort", "registered_read"]


def registered_read(m: Module, memory: Memory, name: str, domain: str = "sync"):
    """A synchronous read port of ``memory`` (see the module docstring); ``name`` names its
    data register."""
    memory.attrs["no_rw_check"] = 1
    port = memory.read_port(domain="comb")
    data = Signal.like(port.data, name=f"{name}_data", reset_less=True)
    m.d[domain] += data.eq(port.data)
    return SimpleNamespace(addr=port.addr, data=data)


class RegisteredReadPort(wiring.Component):
    """A synchronous read port of ``memory`` with a read enable, built as
    :func:`registered_read` builds one (see the module docstring; ``memory`` is marked
    ``no_rw_check``).

    Parameters
    ----------
    memory : Memory
        The memory read; its combinational read port is made here, before the memory is
        elaborated.
    domain : str
        Clock domain of the data register.

    Attributes
    ----------
    addr : In(addr_width)
        Address read.
    en : In(1)
        The word at ``addr`` is taken at the next clock edge when high; ``data`` holds while
        low.
    data : Out(memory.shape)
        The word read, one cycle after ``addr`` (no reset, like a read port's).
    """

    def __init__(self, memory: Memory, domain: str = "sync") -> None:
        if not isinstance(memory, Memory):
            raise TypeError(f"memory must be an amaranth.lib.memory.Memory, not {memory!r}")
        if domain == "comb":
            raise ValueError("domain must be a clock domain, not 'comb'")
        self._domain = domain
        memory.attrs["no_rw_check"] = 1
        self._port = memory.read_port(domain="comb")
        super().__init__(ReadPort.Signature(addr_width=len(self._port.addr),
                                            shape=memory.shape))

    def elaborate(self, platform):
        m = Module()
        word = Signal.like(self._port.data, name="word", reset_less=True)
        m.d.comb += [self._port.addr.eq(self.addr), self.data.eq(word)]
        with m.If(self.en):
            m.d[self._domain] += word.eq(self._port.data)
        return m
