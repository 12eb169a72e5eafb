"""STATUS / CONFIG / command field layouts of the spec round-trip (one definition for RTL and
hosts)."""

import pytest

from nmaccel.spec import sta_isa
from nmaccel.spec.config import sta_preset


def test_status_round_trip():
    word = sta_isa.encode_status(busy=0, done=1, error=1, code=13, command=517)
    st = sta_isa.decode_status(word)
    assert (st.busy, st.done, st.error, st.code, st.command) == (False, True, True, 13, 517)
    assert st.message == sta_isa.ERRORS[13]
    assert sum(w for _, w in sta_isa.STATUS_FIELDS) == 32


def test_status_field_range_checked():
    with pytest.raises(ValueError, match="code"):
        sta_isa.encode_status(code=256)


def test_config_word():
    cfg = sta_preset("ulx3s")
    f = sta_isa.decode_config(sta_isa.config_word(cfg))
    assert f == {"rows": 8, "cols": 8, "lanes": 4, "n": 2, "m": 4}
    assert sum(w for _, w in sta_isa.CONFIG_FIELDS) == 32


def test_enum_fields_fit_their_widths():
    for name, (enum, width) in sta_isa.ENUM_FIELDS.items():
        assert max(enum) < (1 << width), name
        assert dict(sta_isa.command_fields(sta_preset("tiny")))[name] == width


def test_counters_are_csrs():
    assert all(name in sta_isa.CSR for name in sta_isa.COUNTERS)
