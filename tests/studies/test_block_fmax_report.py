"""The block-fmax study's report: ECP5 and iCE40 tables, and its argument checks."""

import pytest

from nmaccel.studies.block_fmax import markdown, run


def _row(name, fmax, met, harness=None):
    r = {"design": "sta", "block": name, "fmax_mhz": fmax, "timing_met": met,
         "resources": {"LUT": [100, 5280], "FF": [50, 5280], "DSP": [1, 8], "BRAM": [2, 30]},
         "critical_path": {"delay_ns": 30.0, "logic_ns": 10.0, "routing_ns": 20.0,
                           "sources": ["hw/x.py:1"]}}
    if harness is not None:
        r["harness_ff"] = harness
    return r


def test_ice40_table_gives_the_harness_flip_flops():
    res = {"command": "nmaccel bench block-fmax --board icebreaker", "board": "icebreaker",
           "board_name": "iCEBreaker (iCE40UP5K)", "sta_preset": "icebreaker",
           "conv_preset": "icebreaker", "freq_mhz": 24.0, "device": "iCE40UP5K-SG48",
           "speed": None, "router": "router1",
           "rows": [_row("SharedVectorUnit", 25.1, True, 211), _row("Slow", 20.0, False, 9)]}
    md = markdown(res)
    assert "serial harness" in md and "| harness FF |" in md
    assert "| sta | SharedVectorUnit | 25.1 | yes | 100 | 50 | 1 | 2 |" in md
    assert md.rstrip().endswith("1 of 2 blocks miss 24 MHz alone: sta Slow (20.0 MHz).")


def test_ecp5_table_has_no_harness_column():
    res = {"command": "nmaccel bench block-fmax", "sta_preset": "ulx3s_lite",
           "conv_preset": "ulx3s", "freq_mhz": 100.0, "device": "LFE5U-85F-BG381",
           "speed": 6, "router": "router1", "rows": [_row("DrainUnit", 120.0, True)]}
    md = markdown(res)
    assert "out-of-context" in md and "harness" not in md and "speed 6" in md


def test_bad_requests_are_named():
    with pytest.raises(ValueError, match="board must be one of .*not 'nope'"):
        run(board="nope", progress=False)
    with pytest.raises(ValueError, match="--whole needs an ECP5 board"):
        run(board="icebreaker", whole=True, progress=False)
    with pytest.raises(ValueError, match="--only names unknown blocks"):
        run(board="icebreaker", only=["Nope"], progress=False)


def test_each_setting_has_its_own_table():
    from nmaccel.studies.block_fmax import study_stem
    assert study_stem("ulx3s", "ulx3s_lite", "ulx3s", 100.0) == "block_fmax"
    assert study_stem("ulx3s", "ulx3s_lut", "ulx3s", 125.0) == "block_fmax_ulx3s_lut_125mhz"
    assert study_stem("ulx3s", "ulx3s_lite", "tiny", 100.0) == "block_fmax_conv_tiny"
    assert study_stem("icebreaker", "icebreaker", "icebreaker", 24.0) == "block_fmax_icebreaker"
    assert study_stem("ulx3s", "ulx3s_lite", "ulx3s", 112.5) == "block_fmax_112p5mhz"


def _fake_place_route(monkeypatch, fmax):
    import nmaccel.studies.block_fmax as bf
    built = []

    def place_route_block(block, name, board, design, cfg, freq):
        built.append(name)
        return {"block": name, "fmax_mhz": fmax[name], "timing_met": fmax[name] >= freq,
                "resources": {"LUT": [10, 100]}, "critical_path": None,
                "seconds": {"total": 0}}
    monkeypatch.setattr(bf, "place_route_block", place_route_block)
    monkeypatch.setattr(bf, "save_figure", lambda fig, path, dpi: path.write_bytes(b""))
    return built


def test_only_replaces_its_rows_in_the_table_of_the_same_setting(tmp_path, monkeypatch):
    import json
    fmax = {"DrainUnit": 130.0, "RequantUnit": 140.0, "LineBuffer": 150.0}
    built = _fake_place_route(monkeypatch, fmax)
    kw = dict(sta_preset_name="ulx3s_lut", freq=125, out=tmp_path, progress=False)
    run(only=["RequantUnit", "DrainUnit"], **kw)
    fmax.update(DrainUnit=99.0)
    run(only=["LineBuffer", "DrainUnit"], **kw)
    assert built == ["DrainUnit", "RequantUnit", "DrainUnit", "LineBuffer"]
    table = json.loads((tmp_path / "block_fmax_ulx3s_lut_125mhz.json").read_text())
    # every block in the study's order: the second DrainUnit over the first, the rest kept
    assert [(r["block"], r["fmax_mhz"]) for r in table["rows"]] == [
        ("DrainUnit", 99.0), ("RequantUnit", 140.0), ("LineBuffer", 150.0)]
    assert all(r["commit"] for r in table["rows"])
    md = (tmp_path / "block_fmax_ulx3s_lut_125mhz.md").read_text()
    assert "1 of 3 blocks miss 125 MHz alone: sta DrainUnit (99.0 MHz)." in md
    assert table["command"] == "nmaccel bench block-fmax --sta-preset ulx3s_lut --freq 125"
    # another setting is another table: the default one is not touched
    assert not (tmp_path / "block_fmax.json").exists()
    run(only=["LineBuffer"], out=tmp_path, progress=False)
    assert [r["block"] for r in json.loads((tmp_path / "block_fmax.json").read_text())["rows"]] \
        == ["LineBuffer"]
    assert len(json.loads((tmp_path / "block_fmax_ulx3s_lut_125mhz.json").read_text())["rows"]) == 3


def test_only_refuses_an_unreadable_table_before_building(tmp_path, monkeypatch):
    built = _fake_place_route(monkeypatch, {"DrainUnit": 130.0})
    (tmp_path / "block_fmax.json").write_text("{not json")
    with pytest.raises(ValueError, match="block_fmax.json, which is not a block-fmax table"):
        run(only=["DrainUnit"], out=tmp_path, progress=False)
    (tmp_path / "block_fmax.json").write_text('{"rows": [{"fmax_mhz": 1}]}')
    with pytest.raises(ValueError, match="not a block-fmax table"):
        run(only=["DrainUnit"], out=tmp_path, progress=False)
    assert built == []
