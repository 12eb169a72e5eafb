# amaranth: UnusedElaboratable=no
"""UART link in amaranth.sim: UartTx → UartRx loopback with random gaps, framing errors,
the frame codec of ``uart_protocol`` (CRC-16 check value, round trips, malformed frames), and
``UartBridge`` against a Python model of the core's host port: PING, WRITE/READ (chunked,
random handshake stalls), and bad CRC / unknown command / bad length / address / truncated
frame / framing error each answered with its error reply, nothing written, and the next good
frame working; constructor validation messages."""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from nmaccel.hw.common.bridge import UartBridge, default_timeout
from nmaccel.hw.common.uart import UartRx, UartTx, uart_divisor
from nmaccel.sim.uart_amaranth import (
    uart_recv,
    uart_recv_byte,
    uart_send,
    uart_send_byte,
)
from nmaccel.spec import sta_isa
from nmaccel.spec import uart_protocol as proto
from nmaccel.spec.config import StaConfig

CFG = StaConfig(rows=2, cols=2, lanes=4, n=2, m=4, softmax_lanes=2, max_seq=64, wbuf_depth=64,
                abuf_depth=32, obuf_depth=32, pbuf_depth=16, cbuf_depth=8, vbuf_depth=32)


def run(dut, *benches, background=()):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for b in background:
        sim.add_testbench(b, background=True)
    for b in benches:
        sim.add_testbench(b)
    sim.run()


# ---------------------------------------------------------------------------------------- UART
@pytest.mark.parametrize("divisor", [4, 5, 8])
def test_tx_to_rx_loopback_with_random_gaps(divisor):
    rng = random.Random(divisor)
    data = [rng.randrange(256) for _ in range(40)] + [0x00, 0xFF, 0x55, 0xAA]
    m = Module()
    m.submodules.tx = tx = UartTx(divisor)
    m.submodules.rx = rx = UartRx(divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    got, errors = [], []

    async def source(ctx):
        for byte in data:
            for _ in range(rng.choice([0, 0, 1, 3, 17])):
                await ctx.tick()
            ctx.set(tx.data.payload, byte)
            ctx.set(tx.data.valid, 1)
            await ctx.tick().until(tx.data.ready)
            ctx.set(tx.data.valid, 0)

    async def sink(ctx):
        while len(got) < len(data):
            ctx.set(rx.data.ready, rng.random() < 0.7)
            _, _, valid, ready, payload, ferr, over = await ctx.tick().sample(
                rx.data.valid, rx.data.ready, rx.data.payload, rx.framing_error, rx.overrun)
            if valid and ready:
                got.append(payload)
            if ferr or over:
                errors.append((ferr, over))

    run(m, source, sink)
    assert got == data and errors == []


def test_tx_back_to_back_timing_and_line_format():
    divisor = 6
    tx = UartTx(divisor)
    got = []

    async def source(ctx):
        for byte in (0x3C, 0xA5, 0x01):
            ctx.set(tx.data.payload, byte)
            ctx.set(tx.data.valid, 1)
            await ctx.tick().until(tx.data.ready)
        ctx.set(tx.data.valid, 0)

    async def line(ctx):
        for _ in range(3):
            got.append(await uart_recv_byte(ctx, tx.tx, divisor, timeout=100))
            # the next start bit follows within one cycle of the stop bit's end
    run(tx, source, line)
    assert got == [0x3C, 0xA5, 0x01]


def test_rx_flags_framing_error_and_recovers():
    divisor = 4
    rx = UartRx(divisor)
    got, ferr = [], []

    async def line(ctx):
        ctx.set(rx.rx, 1)
        await ctx.tick().repeat(5)
        await uart_send_byte(ctx, rx.rx, 0x12, divisor, gap=3)
        await uart_send_byte(ctx, rx.rx, 0x34, divisor, stop_bit=0, gap=3)   # dropped
        await uart_send_byte(ctx, rx.rx, 0x56, divisor, gap=9)

    async def sink(ctx):
        ctx.set(rx.data.ready, 1)
        async for _, _, valid, payload, fe in ctx.tick().sample(rx.data.valid, rx.data.payload,
                                                                 rx.framing_error):
            if valid:
                got.append(payload)
            if fe:
                ferr.append(len(got))

    run(rx, line, background=[sink])
    assert got == [0x12, 0x56] and ferr == [1]


def test_rx_overrun_keeps_first_byte():
    divisor = 4
    rx = UartRx(divisor)
    over = []

    async def line(ctx):
        await uart_send(ctx, rx.rx, b"\x11\x22", divisor)
        await ctx.tick().repeat(3)
        over.append(ctx.get(rx.data.valid))
        assert ctx.get(rx.data.payload) == 0x11

    async def watch(ctx):
        async for _, _, o in ctx.tick().sample(rx.overrun):
            if o:
                over.append("overrun")

    run(rx, line, background=[watch])
    assert over == ["overrun", 1]


def test_uart_validation_messages():
    with pytest.raises(ValueError,
                       match=r"divisor must be an integer >= 4 \(clock cycles per bit\), not 0"):
        UartRx(0)
    with pytest.raises(ValueError, match="divisor must be an integer >= 4.*not 3"):
        UartTx(3)
    with pytest.raises(ValueError, match="divisor must be .*not '8'"):
        UartTx("8")
    assert uart_divisor(48e6, 115200) == 417
    assert uart_divisor(24e6, 3_000_000) == 8
    with pytest.raises(ValueError, match="off by .* tolerance"):
        uart_divisor(25e6, 2_000_000)        # 12.5 cycles per bit
    with pytest.raises(ValueError, match="baud must be a positive integer, not 0"):
        uart_divisor(12e6, 0)
    with pytest.raises(ValueError, match="too fast"):
        uart_divisor(12e6, 6_000_000)


# ------------------------------------------------------------------------------------ protocol
def test_crc16_check_value_and_frame_round_trip():
    assert proto.crc16(b"123456789") == 0x29B1       # CRC-16/CCITT-FALSE check value
    assert proto.encode_ping()[-2:] == proto.crc16(bytes([proto.PING, 0])).to_bytes(2, "little")
    rng = random.Random(7)
    for _ in range(50):
        cmd, payload = rng.randrange(256), bytes(rng.randrange(256)
                                                 for _ in range(rng.randrange(256)))
        assert proto.decode_frame(proto.encode_frame(cmd, payload)) == (cmd, payload)
    frame = proto.encode_write(0x1234, [1, 0xFFFFFFFF])
    assert frame[:3] == bytes([proto.SYNC, proto.WRITE, 12])
    assert frame[3:7] == (0x1234).to_bytes(4, "little")
    assert proto.decode_frame(proto.encode_read(5, 62)) == (proto.READ, bytes([5, 0, 0, 0, 62]))
    assert proto.decode_frame(proto.encode_start(3)) == (proto.START, bytes([3, 0, 0, 0]))
    assert proto.decode_frame(proto.encode_reply(proto.READ, 0, b"ab")) == (proto.READ, b"\0ab")


def test_frame_errors():
    good = proto.encode_ping()
    with pytest.raises(proto.FrameError, match="sync byte 0xA5, not 0x00"):
        proto.decode_frame(b"\0" + good[1:])
    with pytest.raises(proto.FrameError, match="CRC mismatch"):
        proto.decode_frame(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(proto.FrameError, match="LEN says 0 payload bytes"):
        proto.decode_frame(good + b"\0")
    with pytest.raises(proto.FrameError, match="at least 5 bytes"):
        proto.decode_frame(good[:4])
    with pytest.raises(proto.FrameError, match="CRC mismatch"):
        proto.decode_frame(good[:-2] + bytes([good[-2] ^ 0x80]) + good[-1:])
    with pytest.raises(proto.FrameError,
                       match=r"word count must be an integer in \[1, 62\], not 63"):
        proto.encode_write(0, [0] * 63)
    with pytest.raises(proto.FrameError, match="word count .* not 0"):
        proto.encode_read(0, 0)
    with pytest.raises(proto.FrameError, match="addr must be an unsigned 32-bit integer, not -1"):
        proto.encode_read(-1, 1)
    with pytest.raises(proto.FrameError, match="payload must be at most 255 bytes, not 256"):
        proto.encode_frame(1, bytes(256))


def test_id_round_trip_and_bad_magic():
    data = proto.id_bytes(CFG)
    assert len(data) == proto.ID_BYTES
    ident = proto.parse_id(data)
    assert ident == proto.BoardId.of(CFG)
    assert ident.addr_bits == sta_isa.addr_bits(CFG) and ident.rows == 2 and ident.m == 4
    other = proto.BoardId.of(CFG.replace(rows=4))
    assert "rows: 2 vs 4" in ident.differences(other)
    assert proto.config_hash(CFG) != proto.config_hash(CFG.replace(wbuf_depth=128))
    with pytest.raises(proto.FrameError, match="magic"):
        proto.parse_id(b"XXXX" + data[4:])
    with pytest.raises(proto.FrameError, match="must carry 16 bytes, not 15"):
        proto.parse_id(data[:-1])


# -------------------------------------------------------------------------------------- bridge
D = 4
TIMEOUT = 20 * D * 4
#: Bytes of a reply that carries only its status (SYNC, CMD, LEN, STATUS, CRC).
REPLY = proto.FRAME_OVERHEAD + 1


class HostPortModel:
    """The core side of the bridge in Python: a word memory behind ``wr``/``rd``/``rd_data``
    with random ready stalls."""

    def __init__(self, bridge, seed=0):
        self.bridge, self.mem, self.writes, self.rng = bridge, {}, [], random.Random(seed)

    async def process(self, ctx):
        b, rng = self.bridge, self.rng
        out_valid, out_data, rd_ready, wr_ready = False, 0, 1, 1
        ctx.set(b.wr.ready, 1)
        ctx.set(b.rd.ready, 1)
        async for _, _, wv, wp, rv, rp, dready in ctx.tick().sample(
                b.wr.valid, b.wr.payload, b.rd.valid, b.rd.payload, b.rd_data.ready):
            if wv and wr_ready:
                self.mem[wp.addr] = wp.data
                self.writes.append((wp.addr, wp.data))
            if out_valid and dready:
                out_valid = False
            if rv and rd_ready:
                out_valid, out_data = True, self.mem.get(rp.addr, 0xC0DE0000 | rp.addr)
            wr_ready, rd_ready = rng.random() < 0.6, (not out_valid) and rng.random() < 0.6
            ctx.set(b.wr.ready, wr_ready)
            ctx.set(b.rd.ready, rd_ready)
            ctx.set(b.rd_data.valid, out_valid)
            ctx.set(b.rd_data.payload, out_data)


def bridge_session(steps, seed=0, timer_dsp=False):
    """Run ``steps`` (``(request bytes, reply byte count)``, or ``(callable,)`` for custom
    line actions) against a bridge; returns the decoded replies and the host port model."""
    dut = UartBridge(CFG, D, timeout=TIMEOUT, timer_dsp=timer_dsp)
    model = HostPortModel(dut, seed)
    rng = random.Random(seed)
    replies = []

    async def host(ctx):
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(3)
        for step in steps:
            if callable(step[0]):
                await step[0](ctx, dut)
            else:
                gaps = [rng.choice([0, 0, 0, 2, D * 7]) for _ in step[0]]
                gaps[-1] = 0                    # the reply starts right after the last byte
                await uart_send(ctx, dut.rx, step[0], D, gaps=gaps)
            reply = await uart_recv(ctx, dut.tx, step[-1], D, timeout=TIMEOUT * 3)
            replies.append(proto.decode_frame(reply))
        # nothing more comes
        with pytest.raises(TimeoutError):
            await uart_recv_byte(ctx, dut.tx, D, timeout=TIMEOUT * 2)

    run(dut, host, background=[model.process])
    return replies, model


def test_bridge_ping_write_read():
    base = sta_isa.host_address(CFG, "WBUF", 3)
    words = [random.Random(1).randrange(1 << 32) for _ in range(70)]
    replies, model = bridge_session([
        (proto.encode_ping(), REPLY + proto.ID_BYTES),
        (proto.encode_write(base, words[:62]), REPLY),
        (proto.encode_write(base + 62, words[62:]), REPLY),
        (proto.encode_read(base + 1, 62), REPLY + 4 * 62),
        (proto.encode_read(base + 63, 7), REPLY + 4 * 7),
        (proto.encode_start(5), REPLY),
    ])
    assert replies[0] == (proto.PING, b"\0" + proto.id_bytes(CFG))
    assert replies[1] == replies[2] == (proto.WRITE, b"\0")
    data = replies[3][1][1:] + replies[4][1][1:]
    assert replies[3][1][0] == replies[4][1][0] == 0
    assert [int.from_bytes(data[4 * i:4 * i + 4], "little") for i in range(69)] == words[1:]
    assert model.writes[:70] == [(base + i, w) for i, w in enumerate(words)]
    start = sta_isa.host_address(CFG, "CSR", sta_isa.CSR["START"])
    assert replies[5] == (proto.START, b"\0") and model.writes[70:] == [(start, 5)]


def test_bridge_echoes_the_tag():
    """The CMD byte's upper nibble is the host's tag: executed by the command code in the
    lower nibble, echoed whole in the reply (the driver tells its reply from late ones)."""
    base = sta_isa.host_address(CFG, "WBUF", 5)
    replies, model = bridge_session([
        (proto.encode_ping(tag=9), REPLY + proto.ID_BYTES),
        (proto.encode_write(base, [0x1234], tag=15), REPLY),
        (proto.encode_read(base, 1, tag=1), REPLY + 4),
        (proto.encode_frame(proto.command_byte(0xE, 3)), REPLY),       # unknown code, tag 3
    ])
    assert replies[0] == (proto.command_byte(proto.PING, 9), b"\0" + proto.id_bytes(CFG))
    assert replies[1] == (0xF2, b"\0") and model.writes == [(base, 0x1234)]
    assert replies[2] == (0x13, b"\0" + (0x1234).to_bytes(4, "little"))
    assert replies[3] == (0x3E, bytes([proto.STATUS["COMMAND"]]))


@pytest.mark.parametrize("timer_dsp", [False, True])
def test_bridge_error_replies_then_good_frames(timer_dsp):
    """Every error reply (timeouts and framing with either timer), then good frames."""
    S = proto.STATUS
    base = sta_isa.host_address(CFG, "WBUF", 0)
    write = proto.encode_write(base, [0xAAAA5555, 7])
    bad_crc = write[:-1] + bytes([write[-1] ^ 0x10])
    corrupt_payload = bytearray(write)
    corrupt_payload[5] ^= 1                     # CRC catches a flipped data bit
    limit = 1 << sta_isa.addr_bits(CFG)
    good_read = proto.encode_read(base, 2)

    async def framing_error(ctx, dut):          # a byte with a bad stop bit mid-frame
        await uart_send(ctx, dut.rx, write[:4], D)
        await uart_send_byte(ctx, dut.rx, 0x00, D, stop_bit=0)
        await uart_send(ctx, dut.rx, write[5:], D)

    cases = [
        (bad_crc, proto.WRITE, S["CRC"]),
        (bytes(corrupt_payload), proto.WRITE, S["CRC"]),
        (proto.encode_frame(0x4E, b"\1\2"), 0x4E, S["COMMAND"]),     # code 0xE, tag 4
        (proto.encode_frame(proto.PING, b"\0"), proto.PING, S["LENGTH"]),
        (proto.encode_frame(proto.WRITE, bytes(6)), proto.WRITE, S["LENGTH"]),
        (proto.encode_frame(proto.READ, bytes(4)), proto.READ, S["LENGTH"]),
        (proto.encode_frame(proto.READ, bytes(4) + bytes([63])), proto.READ, S["LENGTH"]),
        (proto.encode_frame(proto.START, bytes(3)), proto.START, S["LENGTH"]),
        (proto.encode_read(limit - 1, 2), proto.READ, S["ADDRESS"]),
        (proto.encode_write(limit, [1]), proto.WRITE, S["ADDRESS"]),
        (write[:6], proto.WRITE, S["TIMEOUT"]),           # truncated mid-payload
        (bytes([proto.SYNC]), 0, S["TIMEOUT"]),           # only the sync byte
        (framing_error, proto.WRITE, S["FRAMING"]),
    ]
    steps = []
    for frame, _, _ in cases:
        steps.append((frame, REPLY))
        steps.append((good_read, REPLY + 8))
    replies, model = bridge_session(steps, seed=3, timer_dsp=timer_dsp)
    for i, (_, cmd, status) in enumerate(cases):
        assert replies[2 * i] == (cmd, bytes([status])), i
        assert replies[2 * i + 1][0] == proto.READ and replies[2 * i + 1][1][0] == S["OK"]
    assert model.writes == []                   # no malformed request reached the core


def test_bridge_validation_messages():
    with pytest.raises(TypeError, match="config must be a StaConfig or a ConvConfig, not dict"):
        UartBridge({}, 8)
    with pytest.raises(ValueError, match="divisor must be an integer >= 4"):
        UartBridge(CFG, 2)
    with pytest.raises(ValueError, match=r"timeout must be an integer >= 2 byte times "
                                         r"\(20 \* divisor = 160 cycles\), not 100"):
        UartBridge(CFG, 8, timeout=100)
    assert UartBridge(CFG, 8).timeout == default_timeout(8) == 20480


def split_frames(data: bytes) -> list[tuple[int, bytes]]:
    frames, i = [], 0
    while i < len(data):
        assert data[i] == proto.SYNC, f"reply byte {i} is 0x{data[i]:02X}, not SYNC"
        n = proto.FRAME_OVERHEAD + data[i + 2]
        frames.append(proto.decode_frame(data[i:i + n]))
        i += n
    return frames


@pytest.mark.parametrize("seed", [11, 12])
def test_bridge_survives_random_garbage(seed):
    """Random bytes (many of them SYNC) then silence: every reply is a well-formed frame, at
    most one per SYNC-started frame, and the next good frame is answered normally."""
    rng = random.Random(seed)
    garbage = bytes(rng.choice([proto.SYNC, proto.READ, 0, 1, 2, 3, 4, 5, rng.randrange(256)])
                    for _ in range(80))
    dut = UartBridge(CFG, D, timeout=TIMEOUT)
    model = HostPortModel(dut, seed)
    line = bytearray()
    checked = []

    async def monitor(ctx):
        while True:
            line.append(await uart_recv_byte(ctx, dut.tx, D, timeout=10**9))

    async def host(ctx):
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(3)
        await uart_send(ctx, dut.rx, garbage, D, gaps=[rng.choice([0, 0, 5, TIMEOUT + 10])
                                                        for _ in garbage])
        await ctx.tick().repeat(TIMEOUT * 2 + 260 * 10 * D)
        replies = split_frames(bytes(line))
        assert 1 <= len(replies) <= garbage.count(proto.SYNC)
        assert all(payload and payload[0] in proto.STATUS_NAMES for _, payload in replies)
        n = len(line)
        await uart_send(ctx, dut.rx, proto.encode_read(sta_isa.host_address(CFG, "CSR", 3), 2), D)
        await ctx.tick().repeat(20 * 10 * D)
        cmd, payload = split_frames(bytes(line[n:]))[0]
        assert cmd == proto.READ and payload[0] == proto.STATUS["OK"] and len(payload) == 9
        checked.append(len(replies))

    run(dut, host, background=[model.process, monitor])
    assert checked
