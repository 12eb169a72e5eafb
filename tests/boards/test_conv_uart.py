"""The conv engine behind the UART bridge: address map, PING identity, the host driver
(:class:`~nmaccel.boards.conv_driver.ConvBoard`) on a fake link, and the simulated board
(Verilator, the Verilog ``ConvUartTop`` driven over its UART pins) running the digits nets
bit-exact against the integer golden model."""

import numpy as np
import pytest

from nmaccel.boards.conv_driver import ConvBoard, ConvHostError
from nmaccel.boards.driver import BoardTimeout, BridgeBoard, StaBoard
from nmaccel.model.conv_ref import get_exp_cycles, random_job
from nmaccel.spec import conv_host as H
from nmaccel.spec import uart_protocol as proto
from nmaccel.spec.config import ConvConfig, sta_preset

#: A conv engine that holds the digits nets with the smallest PE array (2 x 2).
CFG = ConvConfig(p_out=2, p_in=2, max_width=8, max_height=8, max_in_channels=128,
                 max_out_channels=32)


# ---------------------------------------------------------------- address map and identity

def test_address_map_spaces_do_not_overlap_and_round_trip():
    seen = set()
    for space in H.SPACES:
        for entry in (0, H.space_depth(CFG, space) - 1):
            for sub in range(H.sub_words(CFG, space)):
                a = H.host_address(CFG, space, entry, sub)
                assert a >> H.space_shift(CFG) == H.SPACES[space]
                assert a < 1 << H.addr_bits(CFG) and a not in seen
                seen.add(a)
    assert H.sub_words(CFG, "WMEM") == 1 and H.stream_words(CFG, "OUT") == 3
    with pytest.raises(ValueError, match="WMEM entry must be an integer in"):
        H.host_address(CFG, "WMEM", H.space_depth(CFG, "WMEM"))
    with pytest.raises(ValueError, match="space must be one of"):
        H.space_width(CFG, "NOPE")
    words = proto.split_words((1 << 70) - 3, 80)
    assert len(words) == 3 and proto.join_words(words) == (1 << 70) - 3
    with pytest.raises(ValueError, match="80-bit unsigned"):
        proto.split_words(1 << 80, 80)
    assert H.decode_status(0b10010) == {"busy": False, "done": True, "write_lost": False,
                                        "in_overflow": False, "out_underflow": True}


def test_ping_identity_names_the_design():
    ident = proto.parse_id(proto.id_bytes(CFG))
    assert ident == proto.BoardId.of(CFG) and ident.design == "conv"
    assert (ident.p_out, ident.p_in, ident.addr_bits) == (2, 2, H.addr_bits(CFG))
    sta = proto.BoardId.of(sta_preset("tiny"))
    assert ident.differences(sta) == ["design: conv vs sta"]
    other = proto.BoardId.of(CFG.replace(p_out=4))
    assert "p_out: 2 vs 4" in ident.differences(other)
    with pytest.raises(AttributeError, match="has no 'rows'"):
        _ = ident.rows


# ---------------------------------------------------------------- the driver on a fake link

class FakeConvLink:
    """Answers every READ with ``status`` (default: a busy engine), IN_FREE 0 and
    OUT_COUNT 0 (it takes and gives nothing), PING with the config's identity, anything else
    with OK."""

    timeout = 0.01

    def __init__(self, cfg, status=1):
        self.cfg, self.status, self.pending = cfg, status, b""

    def write(self, frame):
        cmd, payload = proto.decode_frame(frame)
        code, _ = proto.split_command(cmd)
        data = b""
        if code == proto.PING:
            data = proto.id_bytes(self.cfg)
        elif code == proto.READ:
            data = b"".join(w.to_bytes(4, "little") for w in [self.status, 0, 0][:payload[4]]
                            + [0] * max(0, payload[4] - 3))
        self.pending += proto.encode_reply(cmd, 0, data)

    def read(self, n):
        out, self.pending = self.pending[:n], self.pending[n:]
        return out


def test_driver_checks_its_arguments_before_the_link():
    with pytest.raises(TypeError, match="must be a ConvConfig"):
        ConvBoard(FakeConvLink(CFG), sta_preset("tiny"))
    with pytest.raises(TypeError, match="use StaBoard or ConvBoard"):
        BridgeBoard(FakeConvLink(CFG), CFG)
    with pytest.raises(TypeError, match="must be a StaConfig"):
        StaBoard(FakeConvLink(CFG), CFG)
    board = ConvBoard(FakeConvLink(CFG), CFG)
    too_wide, _ = random_job(np.random.default_rng(0), "mul", 8, 3, 1, 4, 4, 8, 16)
    with pytest.raises(ValueError, match="width"):
        board.load_layer(too_wide)
    assert board.stats["frames"] == 0
    with pytest.raises(ValueError, match=r"images must have shape \(N, 8, 8\)"):
        board.run_net(None, np.zeros((2, 7, 8)))


def test_a_layer_that_never_moves_times_out():
    board = ConvBoard(FakeConvLink(CFG), CFG)
    job, x = random_job(np.random.default_rng(1), "mul", 8, 3, 1, 2, 2, 4, 4)
    with pytest.raises(BoardTimeout, match=r"no beat moved for 0.05 s \(0 of 16 input beats"):
        board.run_layer(job, x, timeout=0.05)
    flagged = ConvBoard(FakeConvLink(CFG, status=0b1001), CFG)
    with pytest.raises(ConvHostError, match="flagged in_overflow"):
        flagged.run_layer(job, x)


# ---------------------------------------------------------------- the simulated board

@pytest.fixture(scope="module")
def workloads():
    from nmaccel.model.conv_nets import build_workload
    return {kind: build_workload(kind, bits=4) for kind in ("adder", "binary")}


@pytest.mark.parametrize("kind,images,preset,stage", [("adder", 2, None, False),
                                                      ("binary", 1, None, False),
                                                      ("adder", 1, None, True),
                                                      ("adder", 1, "icebreaker", False),
                                                      ("binary", 1, "icebreaker", False)])
def test_digits_nets_over_the_uart_are_bit_exact(workloads, kind, images, preset, stage):
    """``None``: a 2x2 engine with one post-processing lane per output lane; ``icebreaker``:
    the iCEBreaker's (one shared lane, 40-bit output beats, weights in the SPRAM model);
    ``stage``: with the register stages a ULX3S build puts between bridge and host port."""
    from nmaccel.boards.simulated import run_conv_net_over_uart
    from nmaccel.model.conv_nets import run_int_net
    from nmaccel.model.digits import load_digits_split
    from nmaccel.spec.config import conv_preset
    cfg = CFG if preset is None else conv_preset(preset)
    x = load_digits_split().test_images[:images]
    wl = workloads[kind]
    res = run_conv_net_over_uart(cfg, wl.qnet, x, host_stage=stage)
    np.testing.assert_array_equal(res["logits"], run_int_net(wl.qnet, x))
    for per_image in res["counters"]:
        for job, cnt in zip(wl.qnet.jobs, per_image):
            pred = get_exp_cycles(job, cfg)
            # the link, not the engine, sets the pace: issue and load beats are exact,
            # the total only bounded below by the model
            assert cnt["cyc_active"] == pred["compute"] and cnt["cyc_load"] == pred["load"]
            assert cnt["cyc_total"] >= pred["total"]


def test_host_port_flags_misuse():
    from nmaccel.boards.simulated import board_session
    from nmaccel.model.conv_ref import pack_settings
    from nmaccel.spec.conv_format import settings_bits
    job, _ = random_job(np.random.default_rng(2), "mul", 8, 3, 1, 2, 2, 4, 4)
    settings = proto.split_words(pack_settings(job, CFG), settings_bits(CFG))
    csr = lambda name: H.host_address(CFG, "CSR", H.CSR[name])  # noqa: E731
    in_addr, out_addr = H.host_address(CFG, "IN"), H.host_address(CFG, "OUT")
    actions = [("check",), ("write", csr("SETTINGS"), settings),
               ("read", csr("STATUS"), 3),
               ("read", out_addr, 1),                    # empty output FIFO
               ("status",),
               ("write", csr("START"), [0]),             # clears the sticky bits; runs
               ("write", csr("SETTINGS"), settings),     # while busy: dropped
               ("status",)]
    actions += [("write", in_addr, [0] * 62)] * 5        # 310 > IN_DEPTH beats
    actions += [("status",)]
    out = board_session(CFG, actions)["outcomes"]
    assert all(o[0] == "ok" for o in out), out
    assert out[2][1] == [0, H.IN_DEPTH, 0]
    assert out[3][1] == [0]
    assert out[4][1]["out_underflow"] and not out[4][1]["busy"]
    st = out[7][1]
    assert st["busy"] and st["write_lost"] and not st["out_underflow"]
    assert out[-1][1]["in_overflow"]
