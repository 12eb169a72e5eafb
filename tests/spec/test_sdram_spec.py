"""SDRAM chip timing in clocks: rounding, CAS latency by clock, validation."""

import pytest

from nmaccel.spec.sdram import (
    IS42S16160G_7,
    MT48LC16M16A2_6A,
    Command,
    mode_register,
    sdram_chip,
)


def test_timing_at_a_clock_rounds_minimums_up_and_the_refresh_interval_down():
    t = IS42S16160G_7.at(100)
    assert (t.t_rcd, t.t_rp, t.t_ras, t.t_rc, t.t_rrd, t.t_wr) == (2, 2, 5, 6, 2, 2)
    # 64 ms / 8192 = 7.8125 µs = 781 clocks, less the 3% margin for a clock rounded up
    assert t.t_refi == 757 and t.init_wait == 20_000 and t.cas_latency == 2
    # a build at 58.3 MHz takes the timing at 59: the interval still holds at the real clock
    assert IS42S16160G_7.at(59).t_refi / 58.333 < 7.8125
    fast = IS42S16160G_7.at(143)
    assert fast.cas_latency == 3 and fast.t_rcd == 3 and fast.t_rc == 9
    assert MT48LC16M16A2_6A.at(125).t_rcd == 3          # 18 ns at 8 ns
    assert IS42S16160G_7.size_bytes == 32 << 20
    assert mode_register(t) == 0x20 and mode_register(fast) == 0x30
    assert Command.READ == 0b0101 and Command.NOP == 0b0111
    # word address {row, bank, column}: consecutive words in a row, the next row next bank
    assert t.split_address((5 << 11) | (2 << 9) | 7) == (2, 5, 7)
    assert t.split_address(511) == (0, 0, 511) and t.split_address(512) == (1, 0, 0)


def test_bad_clocks_chips_and_timings_are_refused():
    with pytest.raises(ValueError, match="runs at most 143 MHz, not 150 MHz"):
        IS42S16160G_7.at(150)
    with pytest.raises(ValueError, match="clk_mhz must be a positive number, not 0"):
        IS42S16160G_7.at(0)
    with pytest.raises(ValueError, match="unknown SDRAM chip 'X'; known: "):
        sdram_chip("X")
    t = IS42S16160G_7.at(100)
    with pytest.raises(ValueError, match="SdramTiming t_rcd must be a positive integer, not 0"):
        t.replace(t_rcd=0)
    with pytest.raises(ValueError, match="cas_latency must be 2 or 3, not 4"):
        t.replace(cas_latency=4)
    from nmaccel.hw.common.sdram import SdramController
    with pytest.raises(ValueError, match="read_buffer must be an integer >= cas_latency"):
        SdramController(t, read_buffer=2)
    with pytest.raises(ValueError, match="refresh interval t_refi=10 cycles is too short"):
        SdramController(t.replace(t_refi=10))
