"""``WeightFetch``: copies buffer entries from external SDRAM into on-chip buffers (the data
path of the STA's FETCH command).

The engine fills one or more *targets* (the STA's WBUF and PBUF), each a buffer with its own
entry width. One request (:func:`fetch_layout`) names an SDRAM word address ``ext_addr`` and,
per target in order, a ``base`` entry and a ``count`` of entries: the SDRAM holds the first
target's entries, then the next target's, back to back. Each entry is
:func:`~nmaccel.spec.sdram.words_per_entry` consecutive SDRAM words, the first word holding
the entry's lowest bits (little-endian, like every other word layout of the kit;
:func:`nmaccel.spec.sdram.pack_entries` is the host-side layout). The engine issues the reads
back to back (one per cycle while the controller takes them), assembles each entry from the
answers and writes it to its target's write stream (always ready) in the cycle after its last
word arrives.

Ports
    ``req``   In  stream of :func:`fetch_layout`: taken when the engine is idle.
    ``mem``   Out stream of :func:`~nmaccel.hw.common.sdram.request_layout`: to the SDRAM
              controller's ``cmd`` (reads only).
    ``mem_rdata`` In stream of the SDRAM word: the controller's ``rdata``.
    ``<target>_wr`` Out stream ``{addr, data}``, always ready: one per target (lower-case
              name), entry writes.
    ``busy``  Out: a request is in progress (until its last entry is written).

Timing
    Cycles from the request to the last write: the SDRAM stream's
    (:func:`nmaccel.model.sdram_cycles.stream_read_cycles` of all the request's words) plus
    :data:`~nmaccel.spec.sta_timing.FETCH_EXTRA` (the request's register and the entry
    write).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from nmaccel.hw.common.sdram import request_layout
from nmaccel.spec.sdram import SdramTiming, words_per_entry

__all__ = ["WeightFetch", "fetch_layout"]


def _check_targets(targets) -> dict:
    if not isinstance(targets, dict) or not targets:
        raise ValueError(f"targets must be a non-empty dict name -> (entry_bits, addr_bits), "
                         f"not {targets!r}")
    for name, spec in targets.items():
        if not (isinstance(name, str) and name.isidentifier()):
            raise ValueError(f"target names must be identifiers, not {name!r}")
        if not (isinstance(spec, tuple) and len(spec) == 2):
            raise ValueError(f"target {name}: expected (entry_bits, addr_bits), not {spec!r}")
        for what, v in zip(("entry_bits", "addr_bits"), spec):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"target {name}: {what} must be a positive integer, not {v!r}")
    return targets


def fetch_layout(timing: SdramTiming, targets: dict, max_entries: int) -> data.StructLayout:
    """``ext_addr``, then per target ``<name>_base`` and ``<name>_count`` (LSB first)."""
    fields = {"ext_addr": unsigned(timing.addr_bits)}
    for name, (_bits, addr_bits) in _check_targets(targets).items():
        fields[f"{name.lower()}_base"] = unsigned(addr_bits)
        fields[f"{name.lower()}_count"] = unsigned(max(1, max_entries.bit_length()))
    return data.StructLayout(fields)


class WeightFetch(wiring.Component):
    """SDRAM → buffers copy engine (module docstring).

    Parameters
    ----------
    timing
        The SDRAM's timing (its address and data widths).
    targets
        ``{name: (entry_bits, addr_bits)}``: the buffers filled, in the order of a request's
        stream.
    max_entries
        Most entries one request may copy into one target.
    """

    def __init__(self, timing: SdramTiming, targets: dict, max_entries: int):
        _check_targets(targets)
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError(f"max_entries must be a positive integer, not {max_entries!r}")
        self.timing, self.targets, self.max_entries = timing, dict(targets), max_entries
        self.wpe = {name: words_per_entry(timing, bits) for name, (bits, _) in targets.items()}
        members = {
            "req": In(stream.Signature(fetch_layout(timing, targets, max_entries))),
            "mem": Out(stream.Signature(request_layout(timing))),
            "mem_rdata": In(stream.Signature(unsigned(timing.data_bits))),
            "busy": Out(1),
        }
        for name, (bits, addr_bits) in targets.items():
            members[f"{name.lower()}_wr"] = Out(stream.Signature(
                data.StructLayout({"addr": unsigned(addr_bits), "data": unsigned(bits)}),
                always_ready=True))
        super().__init__(members)

    def elaborate(self, platform) -> Module:
        m = Module()
        t, names, req = self.timing, list(self.targets), self.req.payload
        max_wpe = max(self.wpe.values())
        total = sum(self.max_entries * w for w in self.wpe.values())
        to_issue = Signal(range(total + 1))            # read requests still to send
        next_addr = Signal(t.addr_bits)
        left = {n: Signal(range(self.max_entries + 1), name=f"{n.lower()}_left") for n in names}
        wr_addr = {n: Signal(self.targets[n][1], name=f"{n.lower()}_addr") for n in names}
        word_no = Signal(range(max(max_wpe, 2)))       # answers gathered for the current entry
        gather = Signal(max_wpe * t.data_bits)
        entry_ready = Signal()
        entry_target = Signal(range(max(len(names), 2)))

        m.d.comb += [self.busy.eq(Cat(*[left[n] != 0 for n in names]).any() | entry_ready),
                     self.req.ready.eq(~self.busy)]
        with m.If(self.req.valid & self.req.ready):
            count = {n: req[f"{n.lower()}_count"] for n in names}
            m.d.sync += [to_issue.eq(sum(count[n] * self.wpe[n] for n in names)),
                         next_addr.eq(req.ext_addr), word_no.eq(0)]
            for n in names:
                m.d.sync += [left[n].eq(count[n]), wr_addr[n].eq(req[f"{n.lower()}_base"])]

        # reads, back to back
        m.d.comb += [self.mem.valid.eq(to_issue != 0),
                     self.mem.payload.addr.eq(next_addr), self.mem.payload.write.eq(0)]
        with m.If(self.mem.valid & self.mem.ready):
            m.d.sync += [to_issue.eq(to_issue - 1), next_addr.eq(next_addr + 1)]

        # answers: word k of an entry lands in slot k; the entry belongs to the first target
        # with entries left (the stream holds the targets' blocks in order)
        m.d.comb += self.mem_rdata.ready.eq(1)
        m.d.sync += entry_ready.eq(0)
        with m.If(self.mem_rdata.valid):
            m.d.sync += gather.word_select(word_no, t.data_bits).eq(self.mem_rdata.payload)
            for i, n in enumerate(names):
                current = left[n] != 0
                for earlier in names[:i]:
                    current = current & (left[earlier] == 0)
                with m.If(current):
                    with m.If(word_no == self.wpe[n] - 1):
                        m.d.sync += [word_no.eq(0), entry_ready.eq(1), entry_target.eq(i),
                                     left[n].eq(left[n] - 1)]
                    with m.Else():
                        m.d.sync += word_no.eq(word_no + 1)
        for i, n in enumerate(names):
            port = getattr(self, f"{n.lower()}_wr")
            m.d.comb += [port.valid.eq(entry_ready & (entry_target == i)),
                         port.payload.addr.eq(wr_addr[n]),
                         port.payload.data.eq(gather[:self.targets[n][0]])]
            with m.If(port.valid):
                m.d.sync += wr_addr[n].eq(wr_addr[n] + 1)
        return m
