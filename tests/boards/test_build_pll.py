"""PLL divider search (iCE40 SB_PLL40, ECP5 EHXPLLL): exact known settings and the limits."""

import pytest

from nmaccel.hw.common.pll import PllSettings, ecp5_pll_params, ice40_pll_params


def test_ice40_24mhz_from_12mhz_matches_icepll():
    # icepll -i 12 -o 24: DIVR=0 DIVF=63 DIVQ=5 FILTER_RANGE=1 (VCO 768 MHz)
    s = ice40_pll_params(12e6, 24e6)
    assert s.f_out == 24e6 and s.f_vco == 768e6
    assert s.params == {"FEEDBACK_PATH": "SIMPLE", "DIVR": 0, "DIVF": 63, "DIVQ": 5,
                        "FILTER_RANGE": 1}


def test_ecp5_100mhz_from_25mhz_matches_ecppll():
    # ecppll -i 25 -o 100: CLKI_DIV=1 CLKFB_DIV=4 CLKOP_DIV=6 CLKOP_CPHASE=2 (VCO 600 MHz)
    s = ecp5_pll_params(25e6, 100e6)
    assert s.f_out == 100e6 and s.f_vco == 600e6
    assert (s.params["CLKI_DIV"], s.params["CLKFB_DIV"], s.params["CLKOP_DIV"],
            s.params["CLKOP_CPHASE"]) == (1, 4, 6, 2)


@pytest.mark.parametrize("f_out", [16e6, 20e6, 24e6, 30e6, 33e6, 48e6, 100e6, 200e6])
def test_ice40_settings_obey_the_formula_and_limits(f_out):
    s = ice40_pll_params(12e6, f_out)
    p = s.params
    f_pfd = 12e6 / (p["DIVR"] + 1)
    f_vco = f_pfd * (p["DIVF"] + 1)
    assert 10e6 <= f_pfd <= 133e6 and 533e6 <= f_vco <= 1066e6
    assert s.f_out == f_vco / 2 ** p["DIVQ"] and 1 <= p["DIVQ"] <= 6
    assert abs(s.f_out - f_out) / f_out < 0.02


@pytest.mark.parametrize("f_out", [25e6, 40e6, 50e6, 75e6, 100e6, 110e6, 125e6, 133e6])
def test_ecp5_settings_obey_the_formula_and_limits(f_out):
    s = ecp5_pll_params(25e6, f_out)
    p = s.params
    assert s.f_out == 25e6 * p["CLKFB_DIV"] / p["CLKI_DIV"]
    assert 400e6 <= s.f_out * p["CLKOP_DIV"] <= 800e6
    assert 1 <= p["CLKFB_DIV"] <= 80 and 1 <= p["CLKI_DIV"] <= 128
    assert abs(s.f_out - f_out) / f_out < 0.005


@pytest.mark.parametrize("fn, f_in, f_out, match", [
    (ice40_pll_params, 12e6, 12e6, r"f_out must be a frequency in \[16, 275\] MHz"),
    (ice40_pll_params, 5e6, 24e6, r"f_in must be a frequency in \[10, 133\] MHz"),
    (ice40_pll_params, 12e6, "24", r"f_out must be a frequency"),
    (ecp5_pll_params, 25e6, 500e6, r"f_out must be a frequency in \[3.125, 400\] MHz"),
    (ecp5_pll_params, 1e6, 100e6, r"f_in must be a frequency in \[8, 400\] MHz"),
])
def test_out_of_range_frequencies_are_rejected(fn, f_in, f_out, match):
    with pytest.raises(ValueError, match=match):
        fn(f_in, f_out)


def test_pll_components_reject_the_wrong_family():
    from amaranth.hdl import Signal

    from nmaccel.hw.common.pll import Ecp5Pll, Ice40Pll
    with pytest.raises(TypeError, match="settings must be ecp5 PllSettings"):
        Ecp5Pll(Signal(), ice40_pll_params(12e6, 24e6))
    with pytest.raises(TypeError, match="settings must be ice40 PllSettings"):
        Ice40Pll(Signal(), ecp5_pll_params(25e6, 100e6), pad=False)
    assert isinstance(ice40_pll_params(12e6, 24e6), PllSettings)


def test_ecp5_reset_reaches_the_domain_through_a_global_buffer():
    """The synchronized reset drives the sync domain through a ``DCCA`` (nextpnr routes it on
    a global line), fed by the async-assert / sync-release synchronizer of ``~locked``."""
    import re

    from amaranth.back import rtlil
    from amaranth.hdl import Module, Signal

    from nmaccel.hw.common.pll import Ecp5Pll
    clk = Signal()
    m = Module()
    m.submodules.pll = pll = Ecp5Pll(clk, ecp5_pll_params(25e6, 100e6))
    m.domains.sync = pll.domain
    count = Signal(8)
    m.d.sync += count.eq(count + 1)
    text = rtlil.convert(m, ports=[clk, count])
    dcca = re.search(r"cell \\DCCA \\rst_global\n(.*?)\n\s*end", text, re.S)
    assert dcca, "no DCCA on the reset"
    clko = re.search(r"connect \\CLKO (\S+)", dcca[1])[1]
    clki = re.search(r"connect \\CLKI (\S+)", dcca[1])[1]
    # the counter's reset is the DCCA's output; its input comes from the synchronizer
    assert clko == "\\rst" and clki.startswith("\\rst_local")
    assert "AsyncFFSynchronizer" in text or "async_ff" in text
