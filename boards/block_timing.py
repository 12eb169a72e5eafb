"""Post-route timing of one Amaranth component placed and routed alone on an ECP5 or an iCE40.

:func:`place_route_block` converts a component, wrapped as the submodule of a top with the
same ports (or, if this Yosys trips on that, as the top itself), to RTLIL, synthesizes it with
YoWASP's Yosys (``synth_ecp5``, the board's options) and places and routes it with
``nextpnr-ecp5 --out-of-context`` (no IO buffers, no global clock network: the component's
ports stay unplaced) on the board's device, then reads nextpnr's JSON report: fmax,
resources and the critical path with the source lines its logic comes from.

nextpnr-ice40 has no out-of-context mode, and a block has more ports than an iCE40 has pins:
on an iCE40 board the component sits in :func:`serial_harness` (every input bit from one
shift register fed by a pin, every output bit XORed into one register driving a pin), so its
logic stays whole and three pins remain; the report gives the harness' flip-flops
(``harness_ff``) beside the totals, which include them.

A block that misses the target alone misses it in any design (its register-to-register
logic is too deep); a block that meets it alone but not inside the full build loses the time
to placement and routing across the chip. ``benchmarks/block_fmax.py`` runs it over the
STA's and the conv engine's blocks.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

from nmaccel.boards import build_report, netlist_passes
from nmaccel.boards.flow import with_router, yowasp_env
from nmaccel.boards.targets import BoardError, board_target

__all__ = ["place_route_block", "serial_harness"]


def _wrapped(component):
    """``component`` as the submodule ``dut`` of a top with the same ports: its logic is
    flattened under prefixed names as inside a board build (read alone as the top, some
    blocks trip an assertion of this Yosys' ABC reintegration on clashing names)."""
    from amaranth.hdl import Module
    from amaranth.lib import wiring

    class Wrapper(wiring.Component):
        def elaborate(self, platform):
            m = Module()
            m.submodules.dut = component
            wiring.connect(m, wiring.flipped(self), component)
            return m

    return Wrapper(component.signature)


def serial_harness(component):
    """``component`` behind three pins: ``sin`` shifts into a register that drives every
    input port bit, and the XOR of every output port bit is registered onto ``sout``. Returns
    ``(harness, input_bits)``."""
    from amaranth.hdl import Cat, Module, Signal, Value
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    ins, outs = [], []
    for _, member, value in component.signature.flatten(component):
        (ins if member.flow == In else outs).append(Value.cast(value))
    width = sum(len(x) for x in ins)

    class Harness(wiring.Component):
        def __init__(self):
            super().__init__({"sin": In(1), "sout": Out(1)})

        def elaborate(self, platform):
            m = Module()
            m.submodules.dut = component
            shift = Signal(max(width, 1))
            m.d.sync += shift.eq(Cat(self.sin, shift[:-1]))
            pos = 0
            for x in ins:
                m.d.comb += x.eq(shift[pos:pos + len(x)])
                pos += len(x)
            fold = Signal()
            m.d.sync += fold.eq(Cat(*outs).xor())
            m.d.comb += self.sout.eq(fold)
            return m

    return Harness(), width


def _synth_ice40(component, plat, synth, env, work):
    """The component in :func:`serial_harness`, synthesized for an iCE40 into ``blk.json``;
    returns ``(synthesized_as, extra result fields)``."""
    from amaranth.back import rtlil
    harness, width = serial_harness(component)
    (work / "blk.il").write_text(rtlil.convert(
        harness, name="blk", platform=plat, ports=[harness.sin, harness.sout]))
    _run([env["YOSYS"], "-q", "-l", "blk.rpt", "-p",
          f"read_rtlil blk.il; synth_ice40 {synth} -top blk; write_json blk.json"],
         work, env, "yosys", "blk.rpt")
    return "serial harness", {"harness_ff": width + 1}


def _synth_ecp5(component, plat, synth, env, work):
    """The component synthesized for an ECP5 into ``blk.json``; returns ``(synthesized_as,
    extra result fields)``."""
    from amaranth.back import rtlil
    # This Yosys (0.70) sometimes trips an assertion in its ABC reintegration, depending
    # on the netlist's names: the block is tried as a submodule first, then as the top.
    for top in ("submodule", "top"):
        elab = _wrapped(component) if top == "submodule" else component
        # elaborated for the board's platform, as in a board build (hard-block instances)
        (work / "blk.il").write_text(rtlil.convert(elab, name="blk", platform=plat))
        try:
            _run([env["YOSYS"], "-q", "-l", "blk.rpt", "-p",
                  f"read_rtlil blk.il; synth_ecp5 {synth} -top blk; write_json blk.json"],
                 work, env, "yosys", "blk.rpt")
            # the netlist passes of a board build (flow.py)
            return top, netlist_passes.run(work / "blk.json", "blk")
        except RuntimeError as exc:
            if top == "top" or "ERROR: Assert" not in str(exc):
                raise


def _pnr_ice40(board, plat, env, work, freq_mhz, seed, router):
    device = plat.device.lower().replace("ice40", "")        # "iCE40UP5K" -> "up5k"
    _run([env["NEXTPNR_ICE40"], "--quiet", "--log", "blk.tim", f"--{device}", "--package",
          plat.package.lower(), "--json", "blk.json", "--pcf-allow-unconstrained",
          "--freq", f"{freq_mhz:g}", "--report", "blk.report.json", "--timing-allow-fail",
          "--seed", str(seed)], work, env, "nextpnr", "blk.tim")


def _pnr_ecp5(board, plat, env, work, freq_mhz, seed, router):
    # the platform's own device/package tables (what its build script passes nextpnr)
    device = plat._nextpnr_device_options[plat.device]
    package = plat._nextpnr_package_options[plat.package].upper()
    _run([env["NEXTPNR_ECP5"], "--quiet", "--log", "blk.tim", device, "--package",
          package, "--speed", str(plat.speed), "--json", "blk.json", "--out-of-context",
          "--freq", f"{freq_mhz:g}", "--report", "blk.report.json", "--timing-allow-fail",
          "--seed", str(seed), *with_router(board.nextpnr_opts, router)],
         work, env, "nextpnr", "blk.tim")


#: Per FPGA family: synthesis, place and route of one block.
_FLOWS = {"ecp5": (_synth_ecp5, _pnr_ecp5), "ice40": (_synth_ice40, _pnr_ice40)}


def place_route_block(component, name: str, board_name: str = "ulx3s", design: str | None = None,
                      cfg=None, freq_mhz: float = 100.0, seed: int = 1,
                      router: str | None = None, keep_dir=None) -> dict:
    """Synthesize, place and route ``component`` alone for ``board_name``'s FPGA.

    ``design``/``cfg`` select the board's synthesis options for that design (e.g.
    ``-nodsp`` for an STA with more multipliers than the device has DSPs); without
    ``design``, plain ``synth_ecp5`` / ``synth_ice40``. Returns ``{"block", "fmax_mhz",
    "synthesized_as", "target_mhz", "timing_met", "resources", "critical_path", "seconds"}``
    (on an iCE40 also ``harness_ff``). ``keep_dir`` keeps the RTLIL, netlist and reports there.
    """
    board = board_target(board_name)
    if board.family not in _FLOWS:
        raise BoardError(f"board must be an ECP5 or iCE40 board, not {board_name!r} "
                         f"({board.family})")
    if isinstance(freq_mhz, bool) or not isinstance(freq_mhz, (int, float)) or freq_mhz <= 0:
        raise BoardError(f"freq_mhz must be a positive frequency in MHz, not {freq_mhz!r}")
    synth_step, pnr_step = _FLOWS[board.family]
    plat = board.platform()
    synth = ("" if design is None else
             " ".join(board.synth_options(design, cfg) if cfg is not None
                      else board.synth_opts.get(design, ())))
    env = yowasp_env()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(keep_dir) if keep_dir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        synthesized_as, extra = synth_step(component, plat, synth, env, work)
        synth_s = time.perf_counter() - start
        pnr_step(board, plat, env, work, freq_mhz, seed, router)
        report = build_report.read_nextpnr_report(work / "blk.report.json")
        log = (work / "blk.rpt").read_text(errors="replace")
        total = time.perf_counter() - start
    fmax = report.get("fmax", {})
    achieved = min((float(v["achieved"]) for v in fmax.values()), default=None)
    return {"block": name, "fmax_mhz": None if achieved is None else round(achieved, 2),
            "synthesized_as": synthesized_as, **extra,
            "target_mhz": freq_mhz,
            "timing_met": None if achieved is None else achieved >= freq_mhz,
            "resources": build_report.resources(board.family, report, log),
            "critical_path": build_report.critical_path(report),
            "seconds": {"synth": round(synth_s, 1), "total": round(total, 1)}}


def _run(cmd, cwd, env, tool, log):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode:
        text = proc.stdout + proc.stderr
        if (Path(cwd) / log).is_file():
            text += (Path(cwd) / log).read_text(errors="replace")
        tail = "\n".join(text.splitlines()[-20:])
        raise RuntimeError(f"{tool} failed (exit {proc.returncode}):\n{tail}")
