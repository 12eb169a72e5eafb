"""Carry-chain ends of a synthesized ECP5 netlist, rewritten so nextpnr adds no cells to them.

nextpnr-ecp5's packer (``split_carry_chain`` in ``ecp5/pack.cc``) puts a feed-in CCU2C in
front of every carry chain whose first CIN has a net (a constant counts: Yosys ties it to
``"0"``/``"1"``) and a feed-out CCU2C after every chain whose last COUT has a net, used or
not. That is 4 logic cells per chain; a netlist with a thousand adders loses 4,000 cells of
the 83,640 on an LFE5U-85F.

:func:`rewrite` edits Yosys' JSON netlist (``write_json``) between synthesis and nextpnr. Per
chain of CCU2C cells (COUT → CIN), as a list of halves (``A``–``D`` inputs, ``INIT``,
``INJECT1``, ``S``):

* **head**: a first half whose propagate (its LUT4) is 0 for every value its inputs can take,
  and whose ``S`` is unused, already sets its own carry (``hw/common/lutmul.py`` builds such
  halves): its CIN is simply disconnected. Otherwise one half is put in front that sets the
  carry: propagate 0, generate the constant (INIT ``0x000F`` for 1, ``0x0000`` for 0) or its
  ``A`` input for a carry that comes from logic (INIT ``0x000A``).
* **tail**: a last COUT that nothing reads is disconnected; one that is read is taken out by a
  half with propagate 0, whose ``S`` is then its carry in.
* halves at the end whose ``S`` nothing reads are dropped, and the list is padded to whole
  CCU2C cells with a spare half.

A port with no net is written ``"x"`` (nextpnr reads that as unconnected; it needs every
port of a CCU2C listed: a missing CIN stops its packer with an exception).

A COUT read elsewhere in the middle of a chain splits it there (a tail, then a head from the
same net). The function of every ``S`` and every read carry is unchanged
(``tests/boards/test_carry_ends.py`` proves it with Yosys' SAT solver against the CCU2C
simulation model). A half keeps its inputs, ``INIT`` and ``INJECT1``, so it computes what it
did; only its place in the chain moves. nextpnr treats a half's tied or open inputs as its
own (an open input reads 1); the halves added here read only ``A``/``B`` tied to 0 or a net
and ``C`` tied to 1, the form ``hw/common/lutmul.py`` places and Yosys' model agrees with.
"""

from __future__ import annotations

import collections
import itertools

from nmaccel.files import edit_json

__all__ = ["CarryEnds", "rewrite", "rewrite_file"]

#: carry-setting halves: LUT4 reads the C = 1 quarter (all 0: propagate 0), LUT2 the low one
SET_ZERO, SET_ONE, SET_FROM_A = 0x0000, 0x000F, 0x000A
#: a half that passes its carry in to ``S`` (propagate 0, so ``S = 0 ^ CIN``)
CARRY_OUT = 0x0000
_SET_INPUTS = {"A": "0", "B": "0", "C": "1", "D": "0"}


class CarryEnds(dict):
    """Counts of one :func:`rewrite`: ``chains``, ``heads_set`` (halves put in front),
    ``heads_open`` (CIN only disconnected), ``tails_out`` (halves taking a carry out),
    ``halves_dropped``, ``ccu2c_before``/``ccu2c_after``, ``nextpnr_cells`` (the feed-in and
    feed-out cells nextpnr would have added to the netlist as Yosys wrote it: 2 per CIN with
    a net, per COUT read in the middle of a chain and per last COUT with a net) and
    ``cells_saved``: those minus the cells the rewrite added."""


def _half(cell: dict, h: int) -> dict:
    conns, params = cell["connections"], cell["parameters"]
    return {"inputs": {p: conns.get(f"{p}{h}", ["1"])[0] for p in "ABCD"},
            "init": _init(params.get(f"INIT{h}", 0)),
            "inject": params.get(f"INJECT1_{h}", "YES"),
            "s": conns.get(f"S{h}", [None])[0],
            "attributes": cell.get("attributes", {})}


def _init(value) -> int:
    if isinstance(value, int):
        return value
    s = str(value)
    if s and set(s) <= {"0", "1"}:
        return int(s, 2)                 # Yosys writes parameters as MSB-first binary strings
    raise ValueError(f"CCU2C INIT must be a binary string or integer, not {value!r}")


def _propagate_is_zero(half: dict) -> bool:
    """Whether the half's LUT4 is 0 for every value of its inputs (constants fixed)."""
    for idx in range(16):
        ok = True
        for k, p in enumerate("ABCD"):
            bit = half["inputs"][p]
            v = (idx >> k) & 1
            if isinstance(bit, str) and bit in ("0", "1") and int(bit) != v:
                ok = False
                break
        if ok and (half["init"] >> idx) & 1:
            return False
    return True


def _new_half(init: int, attributes: dict, a=None, s=None) -> dict:
    inputs = dict(_SET_INPUTS)
    if a is not None:
        inputs["A"] = a
    return {"inputs": inputs, "init": init, "inject": "NO", "s": s, "attributes": attributes}


def _chains(cells: dict) -> list[list[str]]:
    """The CCU2C chains of ``cells`` (names, CIN end first)."""
    ccu = {n: c for n, c in cells.items() if c["type"] == "CCU2C"}
    by_cin = collections.defaultdict(list)
    for n, c in ccu.items():
        cin = c["connections"].get("CIN", [None])[0]
        if isinstance(cin, int):
            by_cin[cin].append(n)
    cout_of = {c["connections"]["COUT"][0]: n for n, c in ccu.items()
               if isinstance(c["connections"].get("COUT", [None])[0], int)}
    chains = []
    for n, c in ccu.items():
        cin = c["connections"].get("CIN", [None])[0]
        if isinstance(cin, int) and cin in cout_of:
            continue                                  # not a head
        chain, cur = [n], c
        while True:
            cout = cur["connections"].get("COUT", [None])[0]
            nxt = by_cin.get(cout, []) if isinstance(cout, int) else []
            if len(nxt) != 1:
                break
            chain.append(nxt[0])
            cur = ccu[nxt[0]]
        chains.append(chain)
    return chains


def _readers(module: dict) -> collections.Counter:
    """Per net bit, how many cell inputs and module ports read it."""
    readers = collections.Counter()
    for c in module["cells"].values():
        dirs = c.get("port_directions", {})
        for port, bits in c["connections"].items():
            if dirs.get(port) != "output":
                for b in bits:
                    if isinstance(b, int):
                        readers[b] += 1
    for p in module.get("ports", {}).values():
        for b in p["bits"]:
            if isinstance(b, int):
                readers[b] += 1
    return readers


def rewrite(netlist: dict, top: str = "top") -> CarryEnds:
    """Rewrite the carry chains of module ``top`` of Yosys JSON ``netlist`` in place (see the
    module docstring); returns the counts."""
    if top not in netlist.get("modules", {}):
        raise ValueError(f"netlist has no module {top!r}; it has "
                         f"{', '.join(sorted(netlist.get('modules', {}))) or 'none'}")
    module = netlist["modules"][top]
    cells = module["cells"]
    readers = _readers(module)
    stats = CarryEnds(chains=0, heads_set=0, heads_open=0, tails_out=0, halves_dropped=0,
                      ccu2c_before=0, ccu2c_after=0, nextpnr_cells=0, cells_saved=0)
    new_cells = {}
    fresh = itertools.count(_next_bit(module))       # net bits for the links between CCU2C
    for chain in _chains(cells):
        stats["chains"] += 1
        stats["ccu2c_before"] += len(chain)
        segments = _segments(cells, chain, readers)
        # what nextpnr would add: a feed-in for a CIN with a net, a feed-out per COUT that
        # logic reads and for a last COUT with a net
        first_cin = segments[0][1]
        last_cout = segments[-1][2]
        stats["nextpnr_cells"] += 2 * (_has_net(first_cin) + len(segments) - 1
                                       + isinstance(last_cout, int))
        for i, (halves, cin, cout) in enumerate(segments):
            halves = _close(halves, cin, cout, readers, stats)
            packed = _pack(f"{chain[0]}$ce{i}_", halves, cells[chain[0]], fresh)
            new_cells.update(packed)
            stats["ccu2c_after"] += len(packed)
        for n in chain:
            del cells[n]
    cells.update(new_cells)
    stats["cells_saved"] = stats["nextpnr_cells"] - 2 * (stats["ccu2c_after"]
                                                         - stats["ccu2c_before"])
    return stats


def _has_net(bit) -> bool:
    """Whether nextpnr gives a port with this bit a net (a constant gets one too)."""
    return isinstance(bit, int) or bit in ("0", "1")


def _segments(cells, chain, readers):
    """``[(halves, cin, cout)]``: the chain cut after every COUT that logic also reads."""
    segments, halves = [], []
    cin = cells[chain[0]]["connections"].get("CIN", [None])[0]
    for k, n in enumerate(chain):
        c = cells[n]
        halves += [_half(c, 0), _half(c, 1)]
        cout = c["connections"].get("COUT", [None])[0]
        last = k == len(chain) - 1
        if last or (isinstance(cout, int) and readers[cout] > 1):
            segments.append((halves, cin, cout))
            halves, cin = [], cout
    return segments


def _close(halves, cin, cout, readers, stats) -> list:
    """The halves of one segment with a head that sets its carry and a tail that ends it."""
    attrs = halves[0]["attributes"]
    first = halves[0]
    reads_cin = first["inject"] != "NO" or not _propagate_is_zero(first) or (
        isinstance(first["s"], int) and readers[first["s"]] > 0)
    head = []
    if reads_cin and _has_net(cin):
        stats["heads_set"] += 1
        if isinstance(cin, int):
            head = [_new_half(SET_FROM_A, attrs, a=cin)]
        else:
            head = [_new_half(SET_ONE if cin == "1" else SET_ZERO, attrs)]
    else:
        stats["heads_open"] += 1
    # a COUT that logic reads (or the next segment's head) goes out through one more half
    tail = ([_new_half(CARRY_OUT, attrs, s=cout)]
            if isinstance(cout, int) and readers[cout] > 0 else [])
    if tail:
        stats["tails_out"] += 1
    else:
        while halves and not (isinstance(halves[-1]["s"], int) and readers[halves[-1]["s"]]):
            halves = halves[:-1]                      # nothing reads it, and no carry after it
            stats["halves_dropped"] += 1
    if not halves and not tail:
        return []                                     # nothing reads any of it
    out = head + halves + tail
    if len(out) % 2:
        out.append(_new_half(SET_ZERO, attrs))        # the spare half of the last CCU2C
    return out


def _pack(prefix: str, halves: list, src: dict, fresh) -> dict:
    """CCU2C cells ``prefix0``, ``prefix1``, ... of ``halves`` (an even number), each COUT
    linked to the next CIN by a new net bit from ``fresh``."""
    packed, link = {}, "x"
    for j in range(0, len(halves), 2):
        conns, params = {}, {}
        for h in (0, 1):
            half = halves[j + h]
            for p, bit in half["inputs"].items():
                conns[f"{p}{h}"] = [bit]
            conns[f"S{h}"] = [half["s"] if isinstance(half["s"], int) else "x"]
            params[f"INIT{h}"] = format(half["init"], "016b")
            params[f"INJECT1_{h}"] = half["inject"]
        # "x": no net (nextpnr wants every port listed; a missing one stops its packer)
        conns["CIN"] = [link]
        link = next(fresh) if j + 2 < len(halves) else "x"
        conns["COUT"] = [link]
        packed[f"{prefix}{j // 2}"] = {"hide_name": src.get("hide_name", 1), "type": "CCU2C",
                        "parameters": params, "attributes": dict(halves[j]["attributes"]),
                        "port_directions": dict(src["port_directions"]),
                        "connections": conns}
    return packed


def _next_bit(module: dict) -> int:
    """A net bit above every bit the module uses."""
    return 1 + max([b for c in module["cells"].values() for bits in c["connections"].values()
                    for b in bits if isinstance(b, int)] +
                   [b for n in module.get("netnames", {}).values() for b in n["bits"]
                    if isinstance(b, int)] + [1])


def rewrite_file(path, top: str = "top") -> CarryEnds:
    """:func:`rewrite` on the JSON netlist file ``path``, written to a temporary file and
    renamed over it."""
    return edit_json(path, lambda netlist: rewrite(netlist, top))
