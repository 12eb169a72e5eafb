"""Host driver errors and framing without a board: wrong PING identity, missing serial port,
reply timeout, corrupt or out-of-step replies, error replies, argument checks, and chunking
of long writes/reads into frames (against a transport that answers like the bridge does, from
the frames it receives)."""

from __future__ import annotations

import numpy as np
import pytest

from nmaccel.boards.driver import (
    BoardError,
    BoardMismatch,
    BoardReplyError,
    BoardTimeout,
    SerialTransport,
    StaBoard,
    contiguous_runs,
    write_runs,
)
from nmaccel.spec import sta_isa
from nmaccel.spec import uart_protocol as proto
from nmaccel.spec.config import StaConfig, sta_preset

CFG = sta_preset("tiny")


class RecordingTransport:
    """Answers each request frame from a memory of words, as the bridge's protocol says
    (``reply`` overrides the answer); records the frames."""

    #: read timeout (s): a read with nothing pending returns at once, the driver's reply
    #: timeout is a few of these
    timeout = 0.05

    def __init__(self, cfg=CFG, ident_cfg=None, reply=None):
        self.cfg, self.ident_cfg, self.reply = cfg, ident_cfg or cfg, reply
        self.frames, self.pending, self.mem = [], b"", {}

    def write(self, data):
        cmd, payload = proto.decode_frame(data)
        self.frames.append((cmd, payload))
        if self.reply is not None:
            self.pending += self.reply(cmd, payload)
            return
        code, _ = proto.split_command(cmd)
        if code == proto.PING:
            self.pending += proto.encode_reply(cmd, 0, proto.id_bytes(self.ident_cfg))
        elif code == proto.WRITE:
            addr = int.from_bytes(payload[:4], "little")
            for i in range(4, len(payload), 4):
                self.mem[addr + (i - 4) // 4] = int.from_bytes(payload[i:i + 4], "little")
            self.pending += proto.encode_reply(cmd, 0)
        elif code == proto.READ:
            addr, n = int.from_bytes(payload[:4], "little"), payload[4]
            data = b"".join(self.mem.get(addr + i, 0).to_bytes(4, "little") for i in range(n))
            self.pending += proto.encode_reply(cmd, 0, data)
        else:
            self.pending += proto.encode_reply(cmd, proto.STATUS["COMMAND"])

    def read(self, n):
        out, self.pending = self.pending[:n], self.pending[n:]
        return out


def test_check_accepts_matching_board_and_rejects_other_design():
    board = StaBoard(RecordingTransport(), CFG)
    assert board.check() == proto.BoardId.of(CFG)
    other = StaBoard(RecordingTransport(ident_cfg=CFG.replace(rows=4, wbuf_depth=4096)), CFG)
    with pytest.raises(BoardMismatch, match=r"different design .*rows: 4 vs 2 \(board vs config\)"
                                            r".*config_hash"):
        other.check()


def test_ping_with_wrong_magic():
    bad = lambda cmd, payload: proto.encode_reply(cmd, 0, b"ABCD" + bytes(12))
    with pytest.raises(BoardMismatch, match=r"magic is b.ABCD., expected one of \[b.nmST., "
                                            r"b.nmCV.\] \(not an nmaccel UART bridge"):
        StaBoard(RecordingTransport(reply=bad), CFG).ping()


def test_reply_timeout_is_a_clear_error():
    silent = lambda cmd, payload: b""
    with pytest.raises(BoardTimeout, match="no reply from the board: got 0 of 1 bytes of the "
                                           "PING reply"):
        StaBoard(RecordingTransport(reply=silent), CFG).ping()
    cut = lambda cmd, payload: proto.encode_reply(cmd, 0, bytes(8))[:6]
    with pytest.raises(BoardTimeout, match="got 3 of 11 bytes of the READ reply"):
        StaBoard(RecordingTransport(reply=cut), CFG).read(0, 2)


def test_corrupt_and_out_of_step_replies():
    def flip(cmd, payload):
        frame = bytearray(proto.encode_reply(cmd, 0, bytes(4)))
        frame[4] ^= 1
        return bytes(frame)
    with pytest.raises(BoardTimeout, match=r"skipped a corrupt frame \(CRC mismatch"):
        StaBoard(RecordingTransport(reply=flip), CFG).read(0, 1)
    other = lambda cmd, payload: proto.encode_reply(proto.WRITE, 0)
    with pytest.raises(BoardTimeout, match=r"skipped 1 reply\(ies\) to earlier requests"):
        StaBoard(RecordingTransport(reply=other), CFG).read(0, 1)
    ok_without_command = lambda cmd, payload: proto.encode_reply(0, 0)
    with pytest.raises(BoardError, match="an OK reply without a command byte"):
        StaBoard(RecordingTransport(reply=ok_without_command), CFG).read(0, 1)
    noise = lambda cmd, payload: bytes(2000)
    with pytest.raises(BoardError, match="no sync byte 0xA5 in 1024 bytes .*wrong baud rate"):
        StaBoard(RecordingTransport(reply=noise), CFG).ping()
    junk_first = lambda cmd, payload: b"\0\x13" + proto.encode_reply(cmd, 0, bytes(4))
    assert StaBoard(RecordingTransport(reply=junk_first), CFG).read(0, 1) == [0]


def test_error_reply_names_the_status():
    reject = lambda cmd, payload: proto.encode_reply(cmd, proto.STATUS["ADDRESS"])
    with pytest.raises(BoardReplyError, match="board rejected READ with ADDRESS "
                                              r"\(address out of range\)") as info:
        StaBoard(RecordingTransport(reply=reject), CFG).read(0, 1)
    assert info.value.status == proto.STATUS["ADDRESS"]
    assert proto.split_command(info.value.command)[0] == proto.READ


def test_long_writes_and_reads_are_chunked():
    transport = RecordingTransport()
    board = StaBoard(transport, CFG)
    base = sta_isa.host_address(CFG, "WBUF", 10)
    words = list(range(1000, 1150))
    board.write(base, words)
    assert [len(p) for c, p in transport.frames] == [4 + 4 * 62, 4 + 4 * 62, 4 + 4 * 26]
    assert board.read(base, 150) == words
    assert [p[4] for c, p in transport.frames[3:]] == [62, 62, 26]
    assert board.read_many([base + 5, base + 6, base + 100, base + 7]) == [1005, 1006, 1100, 1007]
    assert contiguous_runs([1, 2, 3, 7, 8, 2], limit=2) == [(1, 2), (3, 1), (7, 2), (2, 1)]
    # writes keep their order, and repeated writes of one address (CSR EXT_DATA) stay apart
    assert write_runs([(1, 10), (2, 20), (3, 30), (9, 1), (9, 2), (9, 3), (10, 4)], limit=2) \
        == [(1, [10, 20]), (3, [30]), (9, [1]), (9, [2]), (9, [3, 4])]
    assert board.stats["frames"] == 9


def test_status_and_counters_decode_csrs():
    transport = RecordingTransport()
    board = StaBoard(transport, CFG)
    csr = lambda name: sta_isa.host_address(CFG, "CSR", sta_isa.CSR[name])
    transport.mem[csr("STATUS")] = 4 | (3 << 8) | (5 << 16)
    transport.mem[csr("CYCLES")] = 1234
    transport.mem[csr("BARRIER_WAIT")] = 9
    st = board.status()
    assert st["error"] and not st["done"] and st["code"] == 3 and st["index"] == 5
    assert st["message"] == sta_isa.error_name(3)
    counters = board.counters()
    assert counters["CYCLES"] == 1234 and counters["BARRIER_WAIT"] == 9
    assert [p[4] for c, p in transport.frames[-2:]] == [6, 6]    # CSR 2..7 and 9..14


def test_argument_checks():
    board = StaBoard(RecordingTransport(), CFG)
    limit = 1 << sta_isa.addr_bits(CFG)
    with pytest.raises(ValueError, match=r"outside the host address space \[0, "):
        board.read(limit - 1, 2)
    with pytest.raises(ValueError, match="n must be a positive integer, not 0"):
        board.read(0, 0)
    with pytest.raises(TypeError, match="config must be a StaConfig, not str"):
        StaBoard(RecordingTransport(), "tiny")
    with pytest.raises(TypeError, match="transport must have a write"):
        StaBoard(object(), CFG)
    from nmaccel.model.sta_program import StaProgram
    with pytest.raises(ValueError, match="different StaConfig"):
        board.run(StaProgram(StaConfig()))


def test_serial_port_missing_is_a_clear_error():
    with pytest.raises(BoardError, match="cannot open serial port '/dev/nmaccel-no-such-port' "
                                         "at 115200 baud"):
        SerialTransport("/dev/nmaccel-no-such-port", 115200)
    with pytest.raises(ValueError, match="baud must be a positive integer, not 0"):
        SerialTransport("/dev/ttyUSB0", 0)
    with pytest.raises(ValueError, match="timeout must be a positive number of seconds"):
        SerialTransport("/dev/ttyUSB0", 9600, timeout=0)


def test_serial_transport_round_trip_over_a_pty():
    """SerialTransport on a pseudo-terminal; the far end answers one PING like the bridge."""
    import os
    import pty
    import threading
    master, slave = pty.openpty()
    name = os.ttyname(slave)

    def far_end():
        request = b""
        while len(request) < proto.FRAME_OVERHEAD:                # a PING has no payload
            request += os.read(master, proto.FRAME_OVERHEAD - len(request))
        cmd, payload = proto.decode_frame(request)
        assert proto.split_command(cmd)[0] == proto.PING and payload == b""
        os.write(master, proto.encode_reply(cmd, 0, proto.id_bytes(CFG)))

    thread = threading.Thread(target=far_end, daemon=True)
    thread.start()
    transport = SerialTransport(name, 115200, timeout=2.0)
    try:
        assert StaBoard(transport, CFG).check() == proto.BoardId.of(CFG)
    finally:
        transport.close()
        thread.join(2)
        os.close(master)
        os.close(slave)


def test_serial_transport_reply_timeout_over_a_pty():
    """A silent far end: the read timeout ends the wait with BoardTimeout (no hang)."""
    import os
    import pty
    import time
    master, slave = pty.openpty()
    transport = SerialTransport(os.ttyname(slave), 115200, timeout=0.2)
    t0 = time.monotonic()
    try:
        with pytest.raises(BoardTimeout, match="no reply from the board"):
            StaBoard(transport, CFG).ping()
    finally:
        transport.close()
        os.close(master)
        os.close(slave)
    assert time.monotonic() - t0 < 2


def test_board_command_errors():
    import argparse

    from nmaccel.cli import board as board_cli
    from nmaccel.cli.args import CommandError
    parser = argparse.ArgumentParser()
    board_cli.add_arguments(parser)
    with pytest.raises(CommandError, match="cannot open serial port '/dev/nmaccel-no-such-port'"):
        board_cli.run(parser.parse_args(["ping", "--port", "/dev/nmaccel-no-such-port"]))
    with pytest.raises(ValueError, match="k must be a multiple of m=4 .* not 30"):
        board_cli.run(parser.parse_args(["gemm", "--port", "/dev/x", "-k", "30"]))
    from nmaccel.model.sta_workloads import random_sparse_gemm
    program = random_sparse_gemm(CFG, 3, 5, 8, seed=1)
    assert program.expected["y"].shape == (3, 5) and len(program.commands) == 1
    assert np.abs(program.expected["y"]).max() > 20          # scaled into the int8 range


class LateTransport(RecordingTransport):
    """A board that answers the first request only after the driver gave up on it: its reply
    comes in front of the next request's (what a busy board or a slow link does)."""

    def __init__(self):
        super().__init__()
        self.held = None

    def write(self, data):
        super().write(data)
        if self.held is None:
            self.held, self.pending = self.pending, b""       # first reply: late
        elif self.held:
            self.pending, self.held = self.held + self.pending, b""


def test_a_late_reply_never_answers_the_next_request():
    """Seen before tags: read(200) timed out, read(300) returned 200's word. Now the late
    reply is recognised by its tag and skipped."""
    t = LateTransport()
    t.mem.update({200: 0xAAAA, 300: 0xBBBB})
    board = StaBoard(t, CFG)
    with pytest.raises(BoardTimeout):
        board.read(200, 1)
    assert board.read(300, 1) == [0xBBBB]
    assert board.stats["late_replies"] == 1
    assert board.read(200, 1) == [0xAAAA]
    tags = [proto.split_command(cmd)[1] for cmd, _ in t.frames]
    assert tags == [1, 2, 3] and len(set(tags)) == 3


def test_tags_count_1_to_15():
    board = StaBoard(RecordingTransport(), CFG)
    assert [board.next_tag() for _ in range(17)] == list(range(1, 16)) + [1, 2]


def test_a_trickling_port_is_bounded_by_the_reply_timeout():
    """One junk byte per read (never a reply): the wait ends after reply_timeout, not after
    MAX_SKIP read timeouts."""
    import time

    class Trickle(RecordingTransport):
        def write(self, data):
            pass

        def read(self, n):
            time.sleep(0.01)
            return b"\x00"
    t0 = time.monotonic()
    with pytest.raises(BoardTimeout, match="within 0.3 s"):
        StaBoard(Trickle(), CFG, reply_timeout=0.3).ping()
    assert time.monotonic() - t0 < 1.0
    for bad in (0, -1, float("inf"), float("nan"), "1"):
        with pytest.raises(ValueError, match="reply_timeout must be a positive finite number"):
            StaBoard(Trickle(), CFG, reply_timeout=bad)
