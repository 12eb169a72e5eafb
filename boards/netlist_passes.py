"""The passes every ECP5 build runs on Yosys' JSON netlist before nextpnr, board builds
(:mod:`nmaccel.boards.flow`) and out-of-context block builds
(:mod:`nmaccel.boards.block_timing`) alike, so a block is timed as it will be built:

* ``carry_ends`` (:mod:`nmaccel.boards.carry_ends`): carry-chain ends nextpnr would pad;
* ``bram_outreg`` (:mod:`nmaccel.boards.bram_outreg`): registers after DP16KD reads become
  the block RAMs' output registers.
"""

from __future__ import annotations

import time

from nmaccel.boards import bram_outreg, carry_ends

__all__ = ["PASSES", "run"]

#: (name, function of the netlist file and its top module) in the order they run; each
#: returns its counts (a dict), which a build keeps under the pass's name
PASSES = (("carry_ends", carry_ends.rewrite_file), ("bram_outreg", bram_outreg.absorb_file))


def run(path, top: str = "top", stages: dict | None = None) -> dict:
    """Every pass of :data:`PASSES` on the JSON netlist file ``path`` (each rewrites it
    atomically); returns ``{name: counts}`` and adds each pass's seconds to ``stages``."""
    results = {}
    for name, netlist_pass in PASSES:
        t0 = time.perf_counter()
        results[name] = dict(netlist_pass(path, top))
        if stages is not None:
            stages[name] = time.perf_counter() - t0
    return results
