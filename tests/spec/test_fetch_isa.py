"""The FETCH command and external memory in the spec: fields only where there is an SDRAM,
host-side checks with clear messages, the config's clock rule, and the cycle model of FETCH
(waits for the engine, the run ends when it is idle)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from nmaccel.model.sdram_cycles import stream_read_cycles
from nmaccel.model.sta_cycles import program_cycles
from nmaccel.spec import sta_isa
from nmaccel.spec.config import ConfigError, StaConfig, sta_preset
from nmaccel.spec.sta_isa import FetchCommand, GemmCommand, Mode
from nmaccel.spec.sta_timing import COMMAND_OVERHEAD, FETCH_EXTRA


def ext(cfg: StaConfig) -> StaConfig:
    return replace(cfg, sdram_mhz=100)


def test_fetch_fields_only_with_external_memory():
    base = sta_preset("ulx3s_board")
    names = [n for n, _ in sta_isa.command_fields(base)]
    assert "ext_addr" not in names                  # other cores' command words unchanged
    fields = dict(sta_isa.command_fields(ext(base)))
    assert fields["ext_addr"] == 24 and fields["ext_wlen"] == fields["ext_plen"] == 16
    assert [n for n, _ in sta_isa.command_fields(ext(base))][:len(names)] == names
    with pytest.raises(ValueError, match="needs a core with external memory"):
        FetchCommand(ext_addr=0, wlen=1).encode(base)


def test_fetch_round_trip_and_words():
    cfg = ext(sta_preset("ulx3s_board"))
    f = FetchCommand(ext_addr=123456, w_base=512, wlen=300, p_base=512, plen=200, barrier=1)
    assert sta_isa.command_from_word(cfg, f.check(cfg).encode(cfg)) == f
    # WBUF entry: 8 rows x 4 lanes x (8 + 2) bits = 320 bits = 20 words; PBUF 64 bits = 4
    assert sta_isa.ext_words_per_entry(cfg, "WBUF") == 20
    assert sta_isa.ext_words_per_entry(cfg, "PBUF") == 4
    assert f.ext_words(cfg) == 300 * 20 + 200 * 4
    # a GEMM word of an SDRAM core decodes to a GemmCommand as before
    g = GemmCommand(mode=Mode.SPARSE, m_tiles=2, n_tiles=3, k_steps=4)
    assert sta_isa.command_from_word(cfg, g.encode(cfg)).fields(cfg) == g.fields(cfg)
    with pytest.raises(ValueError, match="FETCH fills WBUF and PBUF, not 'ABUF'"):
        sta_isa.ext_words_per_entry(cfg, "ABUF")


@pytest.mark.parametrize("fetch,message", [
    (FetchCommand(ext_addr=0, w_base=1000, wlen=25), r"FETCH fills WBUF entries \[1000, 1025\)"),
    (FetchCommand(ext_addr=0, p_base=1020, plen=5), r"FETCH fills PBUF entries \[1020, 1025\)"),
    (FetchCommand(ext_addr=(1 << 24) - 10, wlen=1), r"reads external words \[16777206, "
                                                     r"16777226\) but the SDRAM has 16777216"),
    (FetchCommand(ext_addr=0, wlen=-1), r"FETCH wlen must be an integer in \[0, 65535\]"),
])
def test_fetch_checks(fetch, message):
    with pytest.raises(ValueError, match=message):
        fetch.check(ext(sta_preset("ulx3s_board")))


def test_sdram_clock_is_checked():
    assert StaConfig().sdram_timing is None
    assert StaConfig(sdram_mhz=100).sdram_timing.cas_latency == 2
    with pytest.raises(ConfigError, match="sdram_mhz: IS42S16160G-7 runs at most 143 MHz, "
                                          "not 200 MHz"):
        StaConfig(sdram_mhz=200)
    with pytest.raises(ConfigError, match="sdram_mhz must be 0 .* not -5"):
        StaConfig(sdram_mhz=-5)


def test_cycle_model_of_fetch():
    cfg = ext(sta_preset("ulx3s_board"))
    t = cfg.sdram_timing
    f = FetchCommand(ext_addr=0, wlen=100, plen=10)
    busy = round(stream_read_cycles(t, f.ext_words(cfg))) + FETCH_EXTRA
    # alone: the command takes the usual overhead, the run lasts until the engine is idle
    alone = program_cycles(cfg, [f])
    assert alone.per_command == [COMMAND_OVERHEAD]
    assert alone.fetch_busy == busy and alone.fetch_wait == 0
    assert alone.fetch_words == f.ext_words(cfg)
    assert alone.total == (COMMAND_OVERHEAD - 2) + busy + 1
    # a second FETCH waits for the first (what it waits is FETCH_WAIT); a FETCH of nothing
    # only waits
    fence = FetchCommand(ext_addr=0)
    two = program_cycles(cfg, [f, fence])
    wait = busy - COMMAND_OVERHEAD
    assert two.fetch_wait == wait and two.per_command == [COMMAND_OVERHEAD,
                                                          COMMAND_OVERHEAD + wait]
    assert two.fetch_busy == busy and two.fetch_words == f.ext_words(cfg)
