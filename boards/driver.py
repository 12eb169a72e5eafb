"""Host driver for the STA on a board (or a simulated board) over the UART bridge.

:class:`StaBoard` speaks the framed protocol of :mod:`nmaccel.spec.uart_protocol` through a
*transport*: any object with ``write(data: bytes)`` and ``read(n) -> bytes`` (returning fewer
than ``n`` bytes when its read timeout runs out). Transports:

* :class:`SerialTransport` — a serial port via pyserial (a real board);
* ``CocotbUartTransport`` in :mod:`nmaccel.boards.cocotb_bench` — the ``rx``/``tx`` pins of the
  Verilog :class:`~nmaccel.boards.uart_top.StaUartTop` under cocotb (tests, no board needed;
  :func:`nmaccel.boards.simulated.run_over_uart`).

Example::

    board = StaBoard(SerialTransport("/dev/ttyUSB0", 115200), sta_preset("ulx3s"))
    board.check()                    # PING: the board runs the design for this config
    result = board.run(program)      # load, START, wait, read back -> RunResult
    assert all(result.check(program).values())
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from nmaccel.model.sta_program import StaProgram
from nmaccel.sim.sta_host import RunResult, finish_run, host_script
from nmaccel.spec import sta_isa
from nmaccel.spec import uart_protocol as proto
from nmaccel.spec.config import StaConfig
from nmaccel.spec.sta_isa import COUNTERS, CSR, decode_status

__all__ = ["BoardError", "BoardMismatch", "BoardReplyError", "BoardTimeout", "BridgeBoard",
           "SerialTransport", "StaBoard", "contiguous_runs", "write_runs"]


class BoardError(RuntimeError):
    """The board link failed (port, framing, reply)."""


class BoardTimeout(BoardError):
    """The board did not answer (in full) within the transport's read timeout."""


class BoardMismatch(BoardError):
    """The board's PING identity is not the design of the driver's config."""


class BoardReplyError(BoardError):
    """The board answered a request with an error status."""

    def __init__(self, command: int, status: int) -> None:
        name = proto.STATUS_NAMES.get(status, f"unknown status {status}")
        text = proto.STATUS_TEXT.get(status, "")
        code, _ = proto.split_command(command)
        super().__init__("board rejected "
                         f"{proto.CMD_NAMES.get(code, f'command 0x{command:02X}')}"
                         f" with {name} ({text})")
        self.command, self.status = command, status


class SerialTransport:
    """A serial port (pyserial): ``port`` e.g. ``"/dev/ttyUSB0"`` or ``"COM3"``, ``baud`` bits per
    second, ``timeout`` seconds a read waits for more bytes."""

    def __init__(self, port: str, baud: int = proto.DEFAULT_BAUD, timeout: float = 1.0) -> None:
        if isinstance(baud, bool) or not isinstance(baud, int) or baud <= 0:
            raise ValueError(f"baud must be a positive integer, not {baud!r}")
        if not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        try:
            import serial
        except ImportError:
            raise BoardError("SerialTransport needs pyserial: pip install pyserial") from None
        try:
            self.serial = serial.Serial(port, baud, timeout=timeout, write_timeout=timeout)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise BoardError(f"cannot open serial port {port!r} at {baud} baud: {exc}") from None
        self.port, self.baud, self.timeout = port, baud, timeout
        self.serial.reset_input_buffer()

    def write(self, data: bytes) -> None:
        import serial
        try:
            self.serial.write(data)
            self.serial.flush()
        except serial.SerialTimeoutException:
            raise BoardTimeout(f"writing to {self.port} timed out after {self.timeout} s") from None

    def read(self, n: int) -> bytes:
        return self.serial.read(n)

    def reset_input(self) -> None:
        """Drop bytes received but not read (a reply nobody waits for any more)."""
        self.serial.reset_input_buffer()

    def close(self) -> None:
        self.serial.close()


def contiguous_runs(addrs: Sequence[int], limit: int = proto.MAX_WORDS) -> list[tuple[int, int]]:
    """``(first address, count)`` runs of consecutive addresses, each at most ``limit`` long."""
    return [(a, len(words)) for a, words in write_runs([(a, 0) for a in addrs], limit)]


def write_runs(writes: Sequence[tuple[int, int]],
               limit: int = proto.MAX_WORDS) -> list[tuple[int, list[int]]]:
    """``(first address, words)``: ``writes`` (``(address, word)`` in order) grouped into runs
    of consecutive addresses, each at most ``limit`` long, in the same order. Writes to one
    address repeatedly (a CSR such as EXT_DATA) stay separate writes, in order."""
    runs: list[tuple[int, list[int]]] = []
    for a, d in writes:
        if runs and a == runs[-1][0] + len(runs[-1][1]) and len(runs[-1][1]) < limit:
            runs[-1][1].append(int(d))
        else:
            runs.append((a, [int(d)]))
    return runs


class BridgeBoard:
    """A design behind the UART bridge, reached through ``transport``: the link (frames, tags,
    replies, PING, READ, WRITE, selftest) that :class:`StaBoard` and
    :class:`~nmaccel.boards.conv_driver.ConvBoard` share.

    ``config`` is the config (a :attr:`config_type`) the board's design was built for;
    :meth:`check` compares it with the board's PING answer. Every request carries a tag (1..15,
    :func:`~nmaccel.spec.uart_protocol.command_byte`) and waits for the reply with that tag: a
    late reply to an earlier request, whose wait ran out, is recognised by its tag and skipped,
    so the link never gets out of step. A request whose wait ran out leaves its tag
    *abandoned*: :meth:`next_tag` does not reuse it for :data:`QUARANTINE` reply timeouts,
    so that a late reply is not taken for the answer to a newer request with the same tag.
    A reply that does not arrive in full within
    ``reply_timeout`` (junk and late replies included) raises :class:`BoardTimeout`, an
    error status :class:`BoardReplyError`. Time is the transport's: ``transport.clock()`` in
    ``transport.time_unit`` if it has them (a simulated board counts clock cycles), else
    wall-clock seconds; ``reply_timeout`` defaults to four of the transport's read timeouts
    (``transport.timeout``).
    """

    #: Junk bytes skipped while looking for a reply's SYNC before giving up.
    MAX_SKIP = 1024
    #: Default ``reply_timeout`` in units of the transport's read timeout.
    REPLY_TIMEOUTS = 4
    #: How long (in reply timeouts) the tag of a request whose wait ran out is not reused.
    QUARANTINE = 8

    #: The config class of the design (:class:`StaBoard` and ``ConvBoard`` set it).
    config_type: type | None = None

    def __init__(self, transport, config, name: str = "uart",
                 reply_timeout: float | None = None) -> None:
        if self.config_type is None:
            raise TypeError("BridgeBoard is the shared link: use StaBoard or ConvBoard")
        self.config_type.require(config)
        for method in ("write", "read"):
            if not callable(getattr(transport, method, None)):
                raise TypeError(f"transport must have a {method}() method "
                                f"({type(transport).__name__} has none)")
        if reply_timeout is None:
            reply_timeout = self.REPLY_TIMEOUTS * float(getattr(transport, "timeout", 1.0))
        if not isinstance(reply_timeout, (int, float)) or not 0 < reply_timeout < float("inf"):
            raise ValueError(f"reply_timeout must be a positive finite number of seconds, "
                             f"not {reply_timeout!r}")
        self.transport, self.config, self.name = transport, config, name
        self.reply_timeout = float(reply_timeout)
        self._clock = getattr(transport, "clock", time.monotonic)
        self._unit = getattr(transport, "time_unit", "s")
        self.addr_limit = 1 << proto.host_addr_bits(config)
        self.checked = False
        self.stats = {"frames": 0, "bytes_out": 0, "bytes_in": 0, "late_replies": 0}
        self._tag = 0
        self._abandoned: dict[int, float] = {}   # tag -> when its wait ran out
        self._timed_out = False
        self._corrupt = None

    # ---- frames ------------------------------------------------------------------------------
    def next_tag(self) -> int:
        """The tag of the next request: 1, 2, ..., 15, 1, ..., skipping tags abandoned less
        than :data:`QUARANTINE` reply timeouts ago (their late replies, even duplicated, may
        still come); if every tag is, the oldest is released."""
        now = self._clock()
        for tag, when in list(self._abandoned.items()):
            if now - when > self.QUARANTINE * self.reply_timeout:
                del self._abandoned[tag]
        if len(self._abandoned) >= proto.MAX_TAG:
            del self._abandoned[min(self._abandoned, key=self._abandoned.get)]
        while True:
            self._tag = self._tag % proto.MAX_TAG + 1
            if self._tag not in self._abandoned:
                return self._tag

    def _read_exact(self, n: int, what: str, deadline: float) -> bytes:
        data = b""
        while len(data) < n:
            if self._clock() > deadline:     # also when junk keeps trickling in
                self._timed_out = True
                raise BoardTimeout(f"no reply from the board: got {len(data)} of {n} bytes of "
                                   f"the {what} within {self.reply_timeout:g} {self._unit}")
            data += self.transport.read(n - len(data))
        self.stats["bytes_in"] += n
        return data

    def read_reply(self, command: int) -> tuple[int, bytes]:
        """Read the reply to the request whose CMD byte is ``command``; returns
        ``(status, data)`` (no status check). Replies with another CMD byte (late replies to
        earlier requests) are skipped; a reply with CMD 0 answers a frame whose CMD byte was
        lost, and counts as this request's (an error status; OK there is a protocol error)."""
        code, _ = proto.split_command(command)
        what = f"{proto.CMD_NAMES.get(code, hex(command))} reply"
        deadline = self._clock() + self.reply_timeout
        late = self.stats["late_replies"]
        try:
            return self._hunt_reply(command, what, deadline)
        except BoardTimeout as exc:
            tag = proto.split_command(command)[1]
            if tag:
                self._abandoned[tag] = self._clock()
            notes = []
            if self.stats["late_replies"] > late:
                notes.append(f"skipped {self.stats['late_replies'] - late} reply(ies) to "
                             "earlier requests")
            if self._corrupt:
                notes.append(f"skipped a corrupt frame ({self._corrupt})")
            raise BoardTimeout(str(exc) + (f"; {'; '.join(notes)}" if notes else "")) from None

    def _hunt_reply(self, command: int, what: str, deadline: float) -> tuple[int, bytes]:
        skipped = 0
        self._corrupt = None
        while True:
            if self._read_exact(1, what, deadline)[0] != proto.SYNC:
                skipped += 1
                if skipped > self.MAX_SKIP:
                    raise BoardError(f"no sync byte 0x{proto.SYNC:02X} in {self.MAX_SKIP} bytes "
                                     "from the board (wrong baud rate or not an nmaccel UART "
                                     "bridge?)")
                continue
            head = self._read_exact(2, what, deadline)
            body = self._read_exact(head[1] + proto.CRC_BYTES, what, deadline)
            try:
                cmd, payload = proto.decode_frame(bytes([proto.SYNC]) + head + body)
            except proto.FrameError as exc:    # a SYNC inside other bytes: keep hunting
                skipped += 3 + len(body)
                self._corrupt = str(exc)
                continue
            if not payload:
                raise BoardError(f"{what} has no status byte")
            if cmd == command:
                return payload[0], payload[1:]
            if cmd == 0:
                if payload[0] == proto.STATUS["OK"]:
                    raise BoardError(f"{what}: an OK reply without a command byte "
                                     "(protocol error)")
                return payload[0], payload[1:]
            self.stats["late_replies"] += 1   # a reply to an earlier request: not ours

    def send_raw(self, frame: bytes) -> None:
        if self._timed_out:                   # bytes of an abandoned reply may be waiting
            drain = getattr(self.transport, "reset_input", None)
            if callable(drain):
                drain()
            self._timed_out = False
        self.transport.write(bytes(frame))
        self.stats["frames"] += 1
        self.stats["bytes_out"] += len(frame)

    def transact(self, frame: bytes) -> bytes:
        """Send one request frame (``uart_protocol.encode_*`` with a tag from
        :meth:`next_tag`), return the reply's data (raises :class:`BoardReplyError` on an
        error status)."""
        command = frame[1]
        self.send_raw(frame)
        status, data = self.read_reply(command)
        if status != proto.STATUS["OK"]:
            raise BoardReplyError(command, status)
        return data

    # ---- commands ----------------------------------------------------------------------------
    def ping(self) -> proto.BoardId:
        """The board's identity (:class:`~nmaccel.spec.uart_protocol.BoardId`)."""
        data = self.transact(proto.encode_ping(self.next_tag()))
        try:
            return proto.parse_id(data)
        except proto.FrameError as exc:
            raise BoardMismatch(str(exc)) from None

    def check(self) -> proto.BoardId:
        """PING and compare with the driver's config; raises :class:`BoardMismatch`."""
        got, want = self.ping(), proto.BoardId.of(self.config)
        if got != want:
            raise BoardMismatch("the board runs a different design than this config: "
                                + "; ".join(f"{d} (board vs config)"
                                            for d in got.differences(want)))
        self.checked = True
        return got

    def _check_range(self, addr: int, n: int) -> None:
        if not isinstance(addr, int) or addr < 0 or addr + n > self.addr_limit:
            raise ValueError(f"addresses {addr!r}..+{n} are outside the host address space "
                             f"[0, {self.addr_limit})")

    def write(self, addr: int, words: Sequence[int]) -> None:
        """Write 32-bit ``words`` to ``addr``, ``addr + 1``, ... (split into frames)."""
        words = [int(w) for w in words]
        self._check_range(addr, len(words))
        for i in range(0, len(words), proto.MAX_WORDS):
            chunk = words[i:i + proto.MAX_WORDS]
            self.transact(proto.encode_write(addr + i, chunk, self.next_tag()))

    def read(self, addr: int, n: int) -> list[int]:
        """Read ``n`` 32-bit words from ``addr``, ``addr + 1``, ..."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, not {n!r}")
        self._check_range(addr, n)
        out: list[int] = []
        for i in range(0, n, proto.MAX_WORDS):
            k = min(proto.MAX_WORDS, n - i)
            data = self.transact(proto.encode_read(addr + i, k, self.next_tag()))
            if len(data) != 4 * k:
                raise BoardError(f"READ of {k} words answered with {len(data)} bytes")
            out += [int.from_bytes(data[4 * j:4 * j + 4], "little") for j in range(k)]
        return out

    def read_many(self, addrs: Sequence[int]) -> list[int]:
        """Read any list of addresses (consecutive ones share frames), in order."""
        out: list[int] = []
        for a, n in contiguous_runs(list(addrs)):
            out += self.read(a, n)
        return out

    def status_address(self) -> int:
        """The host address of the design's CSR STATUS."""
        return proto.csr_address(self.config, "STATUS")

    def selftest(self) -> dict:
        """Send malformed frames and check each gets its error reply and that the link still
        works after it; returns ``{case: status name}`` (raises :class:`BoardError` if a
        case gets the wrong reply). Needs a read timeout longer than the bridge's timeout."""
        csr_status = self.status_address()
        good = proto.encode_read(csr_status, 1)
        addr = csr_status.to_bytes(4, "little")
        bad_crc = bytearray(good)
        bad_crc[-1] ^= 0x5A
        cases = {
            "bad_crc": (bytes(bad_crc), proto.READ, "CRC"),
            "unknown_command": (proto.encode_frame(0x7E), 0x7E, "COMMAND"),
            "bad_length": (proto.encode_frame(proto.READ, addr), proto.READ, "LENGTH"),
            "read_count_zero": (proto.encode_frame(proto.READ, addr + b"\0"), proto.READ,
                                "LENGTH"),
            "address": (proto.encode_read(self.addr_limit - 1, 2), proto.READ, "ADDRESS"),
            "truncated": (good[:-2], proto.READ, "TIMEOUT"),
        }
        seen = {}
        for case, (frame, command, want) in cases.items():
            self.send_raw(frame)
            status, _ = self.read_reply(command)
            name = proto.STATUS_NAMES.get(status, str(status))
            if name != want:
                raise BoardError(f"selftest {case}: expected a {want} reply, got {name}")
            self.read(csr_status, 1)            # the link still works
            seen[case] = name
        return seen


class StaBoard(BridgeBoard):
    """The STA behind a UART bridge, reached through ``transport`` (see the module docstring
    and :class:`BridgeBoard`); ``config`` is its :class:`~nmaccel.spec.config.StaConfig`."""

    config_type = StaConfig

    def start(self, count: int) -> None:
        """Run CBUF[0 .. count-1] (writes CSR START; clears the counters)."""
        self.transact(proto.encode_start(count, self.next_tag()))

    def status(self) -> dict:
        """CSR STATUS decoded: ``raw``, ``busy``, ``done``, ``error``, ``code``, ``index``,
        ``message``."""
        raw = self.read(self.status_address(), 1)[0]
        st = decode_status(raw)
        return {"raw": raw, "busy": st.busy, "done": st.done, "error": st.error,
                "code": st.code, "index": st.command, "message": st.message}

    def counters(self) -> dict:
        """The run counters (:data:`nmaccel.spec.sta_isa.COUNTERS`) by name."""
        addrs = [sta_isa.host_address(self.config, "CSR", CSR[name]) for name in COUNTERS]
        return dict(zip(COUNTERS, self.read_many(addrs)))

    def wait(self, timeout: float = 60.0) -> int:
        """Poll STATUS until done or error; returns the raw STATUS (raises :class:`BoardTimeout`
        after ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        addr = self.status_address()
        while True:
            raw = self.read(addr, 1)[0]
            st = decode_status(raw)
            if st.done or st.error:
                return raw
            if time.monotonic() > deadline:
                raise BoardTimeout(f"the STA did not finish within {timeout} s "
                                   f"(STATUS 0x{raw:08X})")

    def wait_ext_ready(self, timeout: float = 60.0) -> None:
        """Poll STATUS until ``ext_ready`` (the SDRAM's power-up is done; raises
        :class:`BoardTimeout` after ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        addr = self.status_address()
        while not decode_status(raw := self.read(addr, 1)[0]).ext_ready:
            if time.monotonic() > deadline:
                raise BoardTimeout(f"the SDRAM did not finish its power-up within {timeout} s "
                                   f"(STATUS 0x{raw:08X})")

    def run(self, program: StaProgram, raise_on_error: bool = True,
            timeout: float = 60.0) -> RunResult:
        """Load ``program``, START it, wait, read status, counters, cycle log and outputs
        (the steps of :func:`~nmaccel.sim.sta_host.host_script`) -> ``RunResult``."""
        if program.cfg != self.config:
            raise ValueError("program was compiled for a different StaConfig than the board's")
        if not self.checked:
            self.check()
        script = host_script(program)
        t0 = time.perf_counter()
        if program.ext_image:
            self.wait_ext_ready(timeout)
        writes = script["writes"]
        for a, words in write_runs(writes):
            self.write(a, words)
        start_addr, count = script["start"]
        if start_addr != proto.csr_address(self.config, "START"):
            raise BoardError(f"host script starts at 0x{start_addr:X}, not CSR START")
        t_load = time.perf_counter()
        self.start(count)
        status = self.wait(timeout)
        t_run = time.perf_counter()
        counters = self.read_many(script["counters"])
        cyclog = self.read_many(script["cyclog"])
        outputs = [] if decode_status(status).error else self.read_many(script["outputs"])
        t1 = time.perf_counter()
        result = finish_run(program, script, status, counters, cyclog, outputs, self.name,
                            raise_on_error=raise_on_error, wall_seconds=t1 - t0,
                            run_seconds=t_run - t_load)
        result.extra.update(load_seconds=t_load - t0, load_writes=len(writes), **self.stats)
        return result
