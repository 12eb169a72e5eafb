"""Coupled StaConfig parameters in one step (:func:`nmaccel.spec.sta_isa.fit_pattern`,
:func:`~nmaccel.spec.sta_isa.config_problems`): an N:M pattern on a preset derives a
consistent array, or one message names every rule broken."""

import dataclasses

import numpy as np
import pytest

from nmaccel.spec import sta_isa
from nmaccel.spec.config import ConfigError, sta_preset


def _consistent(cfg, layer=True):
    assert sta_isa.config_problems(dataclasses.asdict(cfg), layer) == []
    if layer:
        assert sta_isa.attention_supported(cfg) is None
        for mode in (sta_isa.Mode.SPARSE, sta_isa.Mode.DENSE):
            assert sta_isa.layout_supported(cfg, mode)


def test_3_8_on_ulx3s_derives_a_consistent_array_and_says_what_changed():
    ulx3s = sta_preset("ulx3s")
    cfg, changes = sta_isa.fit_pattern(ulx3s, 3, 8)
    _consistent(cfg)
    assert (cfg.n, cfg.m) == (3, 8) and cfg.lanes % 3 == 0
    assert cfg.rows == cfg.cols == cfg.softmax_lanes
    assert changes == [f"rows 8 -> {cfg.rows}", f"cols 8 -> {cfg.cols}",
                       f"lanes 4 -> {cfg.lanes}", f"softmax_lanes 8 -> {cfg.cols}"]
    gemms, changes = sta_isa.fit_pattern(ulx3s, 3, 8, layer=False)   # GEMMs only: lanes
    assert changes == ["lanes 4 -> 6"] and (gemms.rows, gemms.cols) == (8, 8)
    assert sta_isa.fit_pattern(ulx3s, 2, 4) == (ulx3s, [])        # consistent: unchanged
    for preset in ("tiny", "large", "ulx3s_board", "ulx3s_lite"):
        for n, m in ((3, 8), (3, 4), (1, 4), (4, 8)):
            _consistent(sta_isa.fit_pattern(sta_preset(preset), n, m)[0])


def test_the_preset_with_3_8_breaks_several_rules_listed_at_once():
    values = dict(dataclasses.asdict(sta_preset("ulx3s")), n=3, m=8, lanes=6,
                  softmax_lanes=4, rows=4)
    problems = sta_isa.config_problems(values)
    assert problems == [
        "on-chip attention needs a square array: rows (4) == cols (8)",
        "softmax_lanes (4) must equal cols (8)",
        "the dense window ((m // n) x lanes = 12) must be a multiple of cols (8)"]
    assert sta_isa.config_problems(dict(values, lanes=4))[0].startswith(
        "lanes (4) must be a multiple of n (3)")


def test_explicit_settings_that_break_the_rules_name_every_rule_in_one_error():
    with pytest.raises(ConfigError) as info:
        sta_isa.fit_pattern(dict(dataclasses.asdict(sta_preset("ulx3s")), rows=8, lanes=6),
                            3, 8, fixed={"rows", "lanes"})
    msg = str(info.value)
    assert "every rule broken" in msg and "\n" not in msg
    assert "the dense window ((m // n) x lanes = 12) must be a multiple of cols (8)" in msg
    assert "rows (8) and the dense window (12) must divide one another" in msg
    cfg, changes = sta_isa.fit_pattern(dict(dataclasses.asdict(sta_preset("ulx3s")), rows=4),
                                       2, 4, fixed={"rows"})      # the rest follows rows
    assert (cfg.rows, cfg.cols, cfg.softmax_lanes) == (4, 4, 4)
    assert changes == ["cols 8 -> 4", "softmax_lanes 8 -> 4"]


def test_a_further_rule_of_the_caller_is_met_or_named():
    big_rows = lambda c: None if c.rows >= 8 else f"rows ({c.rows}) must be >= 8"
    cfg, _ = sta_isa.fit_pattern(sta_preset("ulx3s"), 3, 8, extra=big_rows)
    _consistent(cfg)
    assert cfg.rows >= 8
    never = lambda c: "never"
    with pytest.raises(ConfigError, match=r"3:8: the STA's rules allow \d+ square arrays here, "
                                          r"and none passes the further rule; the nearest, "
                                          r"\d+x\d+x\d+: never"):
        sta_isa.fit_pattern(sta_preset("ulx3s"), 3, 8, extra=never)


def test_the_compiler_accepts_a_3_8_gemm_on_the_derived_config():
    from nmaccel.model import nm as nmfmt
    from nmaccel.model.sta_program import GemmSpec, plan_gemm, run_gemm_golden
    cfg, _ = sta_isa.fit_pattern(sta_preset("ulx3s"), 3, 8, layer=False)
    rng = np.random.default_rng(0)
    w = rng.integers(-20, 20, (16, 48)).astype(np.int8)
    w = (w * nmfmt.nm_mask(w, 3, 8)).astype(np.int8)
    x = rng.integers(-20, 20, (8, 48)).astype(np.int8)
    spec = GemmSpec(x, nmfmt.compress(w, 3, 8))
    programs, _ = plan_gemm(spec, cfg)
    assert programs and all(p.cfg == cfg for p in programs)
    assert run_gemm_golden(spec, cfg).shape == (8, 16)
