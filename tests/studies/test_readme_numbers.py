"""README's headline block equals ``reports/report.json`` (both written by ``nmaccel report``).

Fails if someone edits a number in the README (or the JSON) by hand, or if the JSON's
headline no longer follows from its own measurements."""

import copy
import json
from pathlib import Path

import pytest

from nmaccel.studies.report import headline, parse_readme_block

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "reports" / "report.json"
README = ROOT / "README.md"


@pytest.fixture(scope="module")
def data():
    if not REPORT.exists():
        pytest.fail(f"{REPORT} is missing: run `nmaccel report`")
    return json.loads(REPORT.read_text())


def test_readme_headline_equals_report_json(data):
    readme = parse_readme_block(README.read_text())
    assert readme["rows"] == data["headline"]["rows"]
    text = README.read_text()
    h = data["headline"]
    for value in (h["torch_fp32_us"], h["torch_int8_us"]):
        assert f"{value} µs" in text
    if h["fmax_mhz"]:
        assert f"post-route fmax {h['fmax_mhz']:.1f} MHz" in text
    else:
        assert f"fmax not measured: {h['fmax_note']}" in text


def test_report_json_headline_follows_from_its_measurements(data):
    assert headline(copy.deepcopy(data)) == data["headline"]
    assert all(r["bit_exact"] for r in data["headline"]["rows"])
