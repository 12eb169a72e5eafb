"""ECP5 block RAM output registers: a register right after a DP16KD read becomes the DP16KD's
own output register (``REGMODE_x = OUTREG``).

Yosys maps a synchronous read to a DP16KD without its output register (``NOREG``); a
register that the design puts right after the read stays a fabric flip-flop. On the speed-6
LFE5U-85F a DP16KD's data appear 5.5-5.6 ns after the clock without the output register and
0.9 ns after it with one (prjtrellis' timing database, which nextpnr reads per ``REGMODE``):
the read itself takes most of a 10 ns cycle, and the wire from the block RAM to the fabric
register takes the rest. :func:`absorb` edits Yosys' JSON netlist (``write_json``) between
synthesis and nextpnr, like :mod:`nmaccel.boards.carry_ends`:

For each DP16KD and each of its read sides (port A's ``DOA*``, port B's ``DOB*``; in the
36-bit mode, ``DATA_WIDTH_B = 36``, both are one read port, clocked by ``CLKB``, with
``REGMODE_A`` and ``REGMODE_B`` set together as nextpnr does for a ``PDPW16KD``), the
register is absorbed when every data output that anything reads

* goes to exactly one cell, a ``TRELLIS_FF`` at ``DI``, and to no module port;
* whose clock is the port's (same net, neither inverted) and which is enabled every cycle
  (``CEMUX`` "1") and never reset (``LSR`` tied 0, not inverted);

and the port has ``REGMODE`` "NOREG" and its reset (``RSTx``) tied to 0. Then ``REGMODE_x``
becomes "OUTREG", the output clock enable ``OCEx`` is tied to 1 (both in the 36-bit mode),
each output takes its flip-flop's ``Q`` net and the flip-flops are removed. The outputs hold
the same values in the same cycles: a DP16KD output register loads the read data every
enabled clock edge, as the flip-flop did. A port with any other reader keeps its flip-flops.

A flip-flop with a reset or a clock enable, or the word after a mux of several block RAMs
(Yosys' banks of a deep memory), is not absorbed: the RTL registers each block RAM's word
before any logic (``hw/conv/engine.py``'s weight banks) where the clock period needs it.
"""

from __future__ import annotations

import collections

from nmaccel.files import edit_json

__all__ = ["BramOutreg", "absorb", "absorb_file"]


class BramOutreg(dict):
    """Counts of one :func:`absorb`: ``brams`` (DP16KD cells), ``ports_read`` (read sides with
    a data output that something reads), ``ports_absorbed``, ``flipflops_removed`` and
    ``kept`` (read sides left as they were, by reason)."""


def _const(bits: list) -> str | None:
    """The constant ``"0"``/``"1"`` of a one-bit connection, else None."""
    return bits[0] if len(bits) == 1 and bits[0] in ("0", "1") else None


def _param(cell: dict, name: str, default: str = "") -> str:
    return str(cell["parameters"].get(name, default)).strip()


def absorb(netlist: dict, top: str = "top") -> BramOutreg:
    """Absorb the registers after DP16KD reads of module ``top`` (Yosys JSON, edited in place;
    see the module docstring). Returns the counts."""
    modules = netlist.get("modules", {}) if isinstance(netlist, dict) else {}
    if top not in modules:
        raise ValueError(f"the netlist has no module {top!r}")
    module = netlist["modules"][top]
    cells = module["cells"]
    port_bits = {b for p in module.get("ports", {}).values() for b in p.get("bits", ())}
    readers: dict[int, list] = collections.defaultdict(list)
    for name, cell in cells.items():
        dirs = cell.get("port_directions", {})
        for port, bits in cell["connections"].items():
            if dirs.get(port) != "output":
                for b in bits:
                    if isinstance(b, int):
                        readers[b].append((name, port))

    stats = BramOutreg(brams=0, ports_read=0, ports_absorbed=0, flipflops_removed=0,
                       kept=collections.Counter())
    for name in sorted(n for n, c in cells.items() if c["type"] == "DP16KD"):
        bram = cells[name]
        stats["brams"] += 1
        conns = bram["connections"]
        wide = _param(bram, "DATA_WIDTH_B").lstrip("0") in ("36", "100100")
        sides = [("B", ("A", "B"))] if wide else [("A", ("A",)), ("B", ("B",))]
        for clock_side, data_sides in sides:
            outs = [p for p in sorted(conns) for s in data_sides if p.startswith(f"DO{s}")
                    and isinstance(conns[p][0], int)
                    and (readers.get(conns[p][0]) or conns[p][0] in port_bits)]
            if not outs:
                continue
            stats["ports_read"] += 1
            reason, flops = _check(cells, bram, clock_side, data_sides, outs, readers,
                                   port_bits)
            if reason:
                stats["kept"][reason] += 1
                continue
            for s in data_sides:
                bram["parameters"][f"REGMODE_{s}"] = "OUTREG"
                conns[f"OCE{s}"] = ["1"]
            for out, ff_name in zip(outs, flops):
                conns[out] = list(cells[ff_name]["connections"]["Q"])
                del cells[ff_name]
            stats["ports_absorbed"] += 1
            stats["flipflops_removed"] += len(flops)
    stats["kept"] = dict(sorted(stats["kept"].items()))
    return stats


def _check(cells, bram, clock_side, data_sides, outs, readers, port_bits):
    """(reason the read side keeps its flip-flops or None, the flip-flop of each output)."""
    conns = bram["connections"]
    for s in data_sides:
        if _param(bram, f"REGMODE_{s}", "NOREG") != "NOREG":
            return "already registered", []
        if _const(conns.get(f"RST{s}", ["0"])) != "0":
            return "port reset in use", []
    if _param(bram, f"CLK{clock_side}MUX", f"CLK{clock_side}") != f"CLK{clock_side}":
        return "inverted port clock", []
    clock = conns.get(f"CLK{clock_side}", [None])[0]
    flops = []
    for out in outs:
        net = conns[out][0]
        sinks = readers[net]
        if net in port_bits:
            return "read data leaves the module", []
        if len(sinks) != 1:
            return "read data has several readers", []
        ff_name, pin = sinks[0]
        ff = cells[ff_name]
        if ff["type"] != "TRELLIS_FF" or pin != "DI":
            return "read data goes to logic", []
        fc = ff["connections"]
        if fc.get("CLK", [None])[0] != clock or _param(ff, "CLKMUX", "CLK") != "CLK":
            return "register on another clock", []
        if _param(ff, "CEMUX", "CE") != "1" and _const(fc.get("CE", ["x"])) != "1":
            return "register with a clock enable", []
        if _const(fc.get("LSR", ["0"])) != "0" or _param(ff, "LSRMUX", "LSR") != "LSR":
            return "register with a reset", []
        flops.append(ff_name)
    return None, flops


def absorb_file(path, top: str = "top") -> BramOutreg:
    """:func:`absorb` on the JSON netlist file ``path``, written to a temporary file and
    renamed over it."""
    return edit_json(path, lambda netlist: absorb(netlist, top))
