"""The IDP-pruned 2:4 digits Transformer classified on the STA RTL (Verilator).

``nmaccel idp --study rtl`` end to end, on a briefly trained model and a few test images (the
full 360-image run is in ``reports/idp_digits_rtl.md``): every encoder layer of every image runs
on the ``ulx3s`` core, chained on chip; each layer's output is bit-exact, the predictions equal
the integer golden model's, and the cycle model predicts the RTL's cycles exactly.
"""

import json

import pytest

from nmaccel.cli import main
from nmaccel.sim.simulators import require_simulator


def test_idp_digits_on_rtl_cli(tmp_path, capsys):
    require_simulator("verilator")
    out = tmp_path / "rtl.json"
    rc = main(["idp", "--study", "rtl", "--int-pattern", "2:4", "--preset", "ulx3s",
               "--dense-steps", "150", "--budget", "30", "--rtl-images", "6",
               "--rtl-json", str(out), "--rtl-md", str(tmp_path / "rtl.md"), "--no-progress"])
    res = json.loads(out.read_text())
    assert rc == 0
    assert res["images"] == 6 and res["layers"] == 2 and res["nm"] == "2:4"
    assert res["bit_exact_layers"] and res["predictions_identical"]
    assert res["rtl_predictions"] == res["golden_predictions"]
    assert res["model_error"] == 0
    assert 0 <= res["rtl_accuracy"] <= 1 and "float_accuracy" in res
    assert "predictions identical to the integer golden model: yes" in capsys.readouterr().out
    assert "IDP 2:4 digits Transformer on the STA RTL" in (tmp_path / "rtl.md").read_text()


def test_idp_rtl_study_needs_a_pattern(capsys):
    assert main(["idp", "--study", "rtl", "--int-pattern", "", "--no-progress"]) == 2
    assert "--study rtl needs one --int-pattern" in capsys.readouterr().err


def test_run_digits_rtl_rejects_bad_images():
    from nmaccel.sim.digits_rtl import run_digits_rtl
    from nmaccel.spec.config import sta_preset

    class _Prog:
        cfg = sta_preset("ulx3s")
    with pytest.raises(ValueError, match=r"images must be a non-empty \(N, 8, 8\) array"):
        run_digits_rtl(_Prog(), [[1, 2, 3]])


def test_run_digits_rtl_rejects_bad_links():
    from nmaccel.sim.digits_rtl import run_digits_rtl
    from nmaccel.spec.config import sta_preset

    class _Prog:
        cfg = sta_preset("icebreaker")
    images = [[[0.0] * 8] * 8]
    with pytest.raises(ValueError, match="link must be 'backdoor' or 'uart', not 'usb'"):
        run_digits_rtl(_Prog(), images, link="usb")
    with pytest.raises(ValueError, match="link 'uart' needs a runner"):
        run_digits_rtl(_Prog(), images, link="uart")
    with pytest.raises(ValueError, match="link 'backdoor' needs a runner exactly when"):
        run_digits_rtl(_Prog(), images, runner=lambda programs, simulator: [])
