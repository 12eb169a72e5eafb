"""Tests of ``nmaccel.spec.config``: presets, JSON round trips, validation and derived sizes."""

import json
import math

import pytest

from nmaccel.spec.config import STA_PRESETS, ConfigError, ConvConfig, StaConfig, clog2, sta_preset


@pytest.mark.parametrize("name", sorted(STA_PRESETS))
def test_preset_round_trips_through_json(name):
    cfg = sta_preset(name)
    assert isinstance(cfg, StaConfig)
    text = cfg.to_json()
    back = StaConfig.from_json(text)
    assert back == cfg
    assert back.to_json() == text
    assert json.loads(text)["kind"] == "sta"
    assert StaConfig.from_dict(cfg.to_dict()) == cfg


def test_default_config_is_valid():
    assert StaConfig.from_json(StaConfig().to_json()) == StaConfig()


def test_replace_changes_and_validates():
    cfg = sta_preset("ulx3s")
    bigger = cfg.replace(rows=16)
    assert bigger.rows == 16 and cfg.rows == 8
    assert bigger.replace(rows=8) == cfg
    with pytest.raises(ConfigError, match="rows must be a positive integer, not 0"):
        cfg.replace(rows=0)
    with pytest.raises(ConfigError, match="unknown StaConfig parameter"):
        cfg.replace(colums=4)


@pytest.mark.parametrize("changes, message", [
    ({"rows": 0}, "rows must be a positive integer, not 0"),
    ({"cols": -3}, "cols must be a positive integer, not -3"),
    ({"m": 3}, r"m must be a power of two >= 2, not 3"),
    ({"m": 32}, r"m must be an integer in \[2, 16\], not 32"),
    ({"n": 5, "m": 4}, r"n must be <= m \(4\), not 5"),
    ({"lanes": 3, "n": 2}, r"lanes must be a multiple of n \(2\).*not 3"),
    ({"acc_bits": 15}, r"acc_bits must be an integer in \[16, 64\], not 15"),
    ({"rows": True}, "rows must be a positive integer, not True"),
    ({"lanes": 4.0}, "lanes must be a positive integer, not 4.0"),
    ({"softmax_recip_frac": 20}, r"softmax_recip_frac must be an integer in \[24, 62\]"),
])
def test_bad_values_are_rejected(changes, message):
    with pytest.raises(ConfigError, match=message):
        StaConfig(**changes)
    with pytest.raises(ConfigError, match=message):
        sta_preset("ulx3s").replace(**changes)


def test_config_error_is_value_error():
    assert issubclass(ConfigError, ValueError)


def test_from_dict_rejects_unknown_key():
    data = sta_preset("tiny").to_dict()
    data["colour"] = "red"
    with pytest.raises(ConfigError, match=r"unknown StaConfig parameter\(s\): colour"):
        StaConfig.from_dict(data)


def test_from_dict_rejects_wrong_kind():
    data = sta_preset("tiny").to_dict()
    data["kind"] = "conv"
    with pytest.raises(ConfigError, match="kind must be 'sta' for StaConfig, not 'conv'"):
        StaConfig.from_dict(data)


def test_from_dict_needs_an_object():
    with pytest.raises(ConfigError, match="StaConfig needs a JSON object, not list"):
        StaConfig.from_json("[1, 2]")


def test_from_json_rejects_invalid_text():
    with pytest.raises(ConfigError, match="StaConfig JSON is not valid"):
        StaConfig.from_json('{"rows": 8,')


def test_from_json_validates_values():
    with pytest.raises(ConfigError, match="rows must be a positive integer, not 0"):
        StaConfig.from_json('{"kind": "sta", "rows": 0}')


def test_unknown_preset_lists_valid_names():
    with pytest.raises(ConfigError, match="unknown STA preset 'huge'") as info:
        sta_preset("huge")
    for name in STA_PRESETS:
        assert name in str(info.value)


def test_clog2():
    assert [clog2(v) for v in (1, 2, 3, 4, 5, 8, 9, 257)] == [0, 1, 2, 2, 3, 3, 4, 9]
    with pytest.raises(ValueError):
        clog2(0)


def test_ulx3s_derived_properties():
    cfg = sta_preset("ulx3s")
    assert cfg.index_bits == math.ceil(math.log2(cfg.m)) == 2
    assert cfg.acts_per_cycle == cfg.lanes * cfg.m // cfg.n == 8
    assert cfg.multipliers == cfg.rows * cfg.cols * cfg.lanes == 256
    max_shift = 2 ** (cfg.softmax_in_bits - cfg.softmax_in_frac)
    assert cfg.softmax_max_shift == max_shift == 64
    expected_sum_bits = (cfg.softmax_exp_bits + 1 + max_shift
                         + math.ceil(math.log2(cfg.max_seq + 1)))
    assert cfg.softmax_sum_bits == expected_sum_bits == 15 + 1 + 64 + 9


@pytest.mark.parametrize("change, message", [
    ({"rows": 10 ** 6}, "rows must be an integer in [1, 64], not 1000000"),
    ({"lanes": 128, "n": 2}, "lanes must be an integer in [1, 64], not 128"),
    ({"rows": 64, "cols": 64, "lanes": 8}, "at most 16384 multipliers, not 32768"),
    ({"max_seq": 10 ** 5}, "max_seq must be an integer in [1, 4096]"),
    ({"wbuf_depth": 1 << 30}, "wbuf_depth must be an integer in [1, 1048576]"),
    ({"cbuf_depth": 1 << 17}, "cbuf_depth must be an integer in [1, 65536]"),
])
def test_sta_sizes_have_upper_bounds(change, message):
    """A huge size is refused at once, not after hours of Verilog generation."""
    with pytest.raises(ConfigError) as exc:
        StaConfig(**change)
    assert message in str(exc.value)


def test_conv_sizes_have_upper_bounds():
    with pytest.raises(ConfigError, match=r"max_in_channels must be an integer in \[1, 4096\]"):
        ConvConfig(max_in_channels=10 ** 6)
