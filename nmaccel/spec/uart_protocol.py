"""Framed request/reply protocol of the STA UART host link, defined once (pure Python).

The gateware (:class:`nmaccel.hw.common.bridge.UartBridge`) takes its constants from here and
the host driver (:mod:`nmaccel.boards.driver`) encodes and decodes frames with the functions
here. The link is 8N1 UART; every multi-byte number is little-endian.

Request frame (host → board)
    ======  =========  =====================================================================
    byte    name       meaning
    ======  =========  =====================================================================
    0       SYNC       ``0xA5`` (bytes before it are skipped)
    1       CMD        bits 3..0: command code (table below); bits 7..4: a tag the host
                       chooses (the driver counts 1..15), echoed in the reply
    2       LEN        payload length in bytes, 0..255
    3..     PAYLOAD    ``LEN`` bytes
    3+LEN   CRC        2 bytes, little-endian: CRC-16 of CMD, LEN and PAYLOAD (polynomial
                       0x1021, init 0xFFFF, no reflection, no final XOR: "CRC-16/CCITT-FALSE";
                       ``crc16(b"123456789") == 0x29B1``)
    ======  =========  =====================================================================

Reply frame (board → host), one per request, same layout: SYNC, CMD (the request's command
byte echoed, tag included), LEN (``1 + len(DATA)``), STATUS, DATA, CRC over CMD, LEN, STATUS
and DATA. The tag lets the host tell its reply from a late reply to an earlier request that
it stopped waiting for; a reply with CMD 0 answers a frame whose CMD byte never arrived.

Commands
    ======  ======  ===================================  ======================================
    code    name    request payload                      reply DATA (STATUS OK)
    ======  ======  ===================================  ======================================
    0x01    PING    none (LEN 0)                         :data:`ID_BYTES` bytes, see
                                                         :class:`BoardId`
    0x02    WRITE   addr u32, then 1..:data:`MAX_WORDS`   none; word ``i`` is written to host
                    words u32 (LEN = 4 + 4n)             address ``addr + i`` after the CRC checks
    0x03    READ    addr u32, n u8 (1..MAX_WORDS)        n words u32 read from ``addr + i``
                    (LEN 5)
    0x04    START   count u32 (LEN 4)                    none; writes ``count`` to CSR START
    ======  ======  ===================================  ======================================

    Host addresses are the design's: :mod:`nmaccel.spec.sta_isa` for the STA,
    :mod:`nmaccel.spec.conv_host` for the conv engine (``host_address``); STATUS and the
    counters are READs of CSR addresses. START writes the design's CSR START. A READ of a
    buffer the STA core is using waits until the run ends (the core holds such reads back
    while busy).

Status byte (checked in this order; an error reply carries no DATA and nothing is executed)
    ====  =========  ==========================================================================
    code  name       meaning
    ====  =========  ==========================================================================
    0     OK         executed
    1     CRC        the request's CRC byte is wrong
    2     COMMAND    unknown command code
    3     LENGTH     LEN (or READ's n) does not fit the command
    4     TIMEOUT    the frame stopped mid-way: no byte for ``timeout`` clock cycles (the reply
                     echoes the command byte if it arrived, else 0)
    5     ADDRESS    ``addr + n - 1`` is beyond the core's host address space
    6     FRAMING    a byte of the frame had a bad stop bit (the rest of the frame is skipped
                     until the line has been quiet for ``timeout`` cycles)
    ====  =========  ==========================================================================

After any error the parser returns to hunting for SYNC, so a following good frame works.

PING reply DATA (:data:`ID_BYTES` = 16 bytes)
    the design's magic (4 bytes: ``b"nmST"`` the STA, ``b"nmCV"`` the conv engine,
    :data:`DESIGN_IDS`), protocol :data:`VERSION` (u8), :data:`MAX_WORDS` (u8), ``addr_bits``
    (u8), five shape fields (u8 each: STA ``rows``, ``cols``, ``lanes``, ``n``, ``m``; conv
    ``p_out``, ``p_in``, ``data_bits``, ``coef_bits``, ``mult_bits``), and the config hash
    (u32, :func:`config_hash`: CRC-32 of the config's sorted JSON), so the driver can check that
    the board runs the design it compiled its program for.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

__all__ = [
    "DEFAULT_BAUD",
    "CODE_BITS",
    "MAX_TAG",
    "command_byte",
    "split_command",
    "CMD_NAMES",
    "COMMANDS",
    "ID_BYTES",
    "MAGIC",
    "MAX_WORDS",
    "PING",
    "READ",
    "START",
    "STATUS",
    "STATUS_NAMES",
    "SYNC",
    "VERSION",
    "WRITE",
    "BoardId",
    "DESIGN_IDS",
    "host_addr_bits",
    "host_map",
    "split_words",
    "join_words",
    "csr_address",
    "FrameError",
    "config_hash",
    "CRC_BYTES",
    "CRC_INIT",
    "CRC_POLY",
    "CRC_WIDTH",
    "FRAME_OVERHEAD",
    "crc16",
    "crc16_update",
    "decode_frame",
    "encode_frame",
    "encode_ping",
    "encode_read",
    "encode_reply",
    "encode_start",
    "encode_write",
    "id_bytes",
    "parse_id",
]

#: Serial speed of the board link unless a build or a driver is told otherwise (8N1).
DEFAULT_BAUD = 115200
SYNC = 0xA5
#: 2: the CMD byte carries a tag in its upper nibble (version 1 had none). 3: a 16-bit CRC
#: (version 2's CRC-8 let about 1 in 256 frames shifted by a lost byte through).
VERSION = 3
#: Bits of the command code in the CMD byte; the bits above hold the tag.
CODE_BITS = 4
#: Largest tag (tags 1..MAX_TAG are the host's; 0 is a reply to a frame without a CMD byte).
MAX_TAG = (1 << (8 - CODE_BITS)) - 1
MAGIC = b"nmST"
#: Most 32-bit words one WRITE or READ frame carries (LEN and the reply's LEN fit in a byte).
MAX_WORDS = 62

PING, WRITE, READ, START = 0x01, 0x02, 0x03, 0x04
COMMANDS = {"PING": PING, "WRITE": WRITE, "READ": READ, "START": START}
CMD_NAMES = {v: k for k, v in COMMANDS.items()}

#: Reply status codes.
STATUS = {"OK": 0, "CRC": 1, "COMMAND": 2, "LENGTH": 3, "TIMEOUT": 4, "ADDRESS": 5,
          "FRAMING": 6}
STATUS_NAMES = {v: k for k, v in STATUS.items()}
STATUS_TEXT = {
    0: "ok", 1: "bad CRC", 2: "unknown command", 3: "bad length", 4: "frame timed out",
    5: "address out of range", 6: "UART framing error",
}
#: The one-byte fields after the protocol version and MAX_WORDS (the STA's names; every
#: design has ``addr_bits`` and five shape fields, :data:`DESIGN_IDS`).
ID_FIELDS = ("addr_bits", "rows", "cols", "lanes", "n", "m")
ID_BYTES = len(MAGIC) + 2 + len(ID_FIELDS) + 4

#: The frame check: CRC-16/CCITT-FALSE (MSB first, no reflection, no final XOR).
CRC_WIDTH = 16
CRC_POLY = 0x1021
CRC_INIT = 0xFFFF
CRC_BYTES = CRC_WIDTH // 8
#: Bytes of a frame besides its payload: SYNC, CMD, LEN and the CRC.
FRAME_OVERHEAD = 3 + CRC_BYTES

_CRC_MASK = (1 << CRC_WIDTH) - 1
_CRC_TOP = 1 << (CRC_WIDTH - 1)


class FrameError(ValueError):
    """Bytes that are not a valid frame (wrong sync, length, CRC or field)."""


def crc16_update(crc: int, byte: int) -> int:
    """CRC-16 register after shifting in ``byte`` (MSB first). Linear in ``(crc, byte)``
    over GF(2), which is how the gateware builds it (``bridge.crc_next``)."""
    crc ^= byte << (CRC_WIDTH - 8)
    for _ in range(8):
        crc = ((crc << 1) ^ CRC_POLY) & _CRC_MASK if crc & _CRC_TOP else (crc << 1) & _CRC_MASK
    return crc


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (starts from :data:`CRC_INIT`)."""
    crc = CRC_INIT
    for b in data:
        crc = crc16_update(crc, b)
    return crc


def encode_frame(cmd: int, payload: bytes = b"") -> bytes:
    """A request frame: SYNC, CMD, LEN, PAYLOAD, CRC."""
    if not 0 <= cmd <= 0xFF:
        raise FrameError(f"cmd must be a byte (0..255), not {cmd!r}")
    payload = bytes(payload)
    if len(payload) > 255:
        raise FrameError(f"payload must be at most 255 bytes, not {len(payload)}")
    body = bytes([cmd, len(payload)]) + payload
    return bytes([SYNC]) + body + crc16(body).to_bytes(CRC_BYTES, "little")


def encode_reply(cmd: int, status: int, data: bytes = b"") -> bytes:
    """A reply frame (as the bridge sends it): SYNC, CMD, LEN, STATUS, DATA, CRC."""
    return encode_frame(cmd, bytes([status]) + bytes(data))


def decode_frame(frame: bytes) -> tuple[int, bytes]:
    """``(cmd, payload)`` of one whole frame; raises :class:`FrameError` if it is not valid."""
    frame = bytes(frame)
    if len(frame) < FRAME_OVERHEAD:
        raise FrameError(f"a frame has at least {FRAME_OVERHEAD} bytes, got {len(frame)}")
    if frame[0] != SYNC:
        raise FrameError(f"frame must start with sync byte 0x{SYNC:02X}, not 0x{frame[0]:02X}")
    cmd, length = frame[1], frame[2]
    if len(frame) != FRAME_OVERHEAD + length:
        raise FrameError(f"LEN says {length} payload bytes, so the frame has "
                         f"{FRAME_OVERHEAD + length} bytes, not {len(frame)}")
    said = int.from_bytes(frame[-CRC_BYTES:], "little")
    computed = crc16(frame[1:-CRC_BYTES])
    if said != computed:
        raise FrameError(f"CRC mismatch: frame says 0x{said:04X}, computed 0x{computed:04X}")
    return cmd, frame[3:-CRC_BYTES]


def _u32(value: int, what: str) -> bytes:
    if not isinstance(value, int) or not 0 <= value < 1 << 32:
        raise FrameError(f"{what} must be an unsigned 32-bit integer, not {value!r}")
    return value.to_bytes(4, "little")


def _count(n: int) -> int:
    if not isinstance(n, int) or not 1 <= n <= MAX_WORDS:
        raise FrameError(f"word count must be an integer in [1, {MAX_WORDS}], not {n!r}")
    return n


def command_byte(code: int, tag: int = 0) -> int:
    """The CMD byte of command ``code`` with ``tag`` (0..:data:`MAX_TAG`) in its upper bits."""
    if not isinstance(tag, int) or not 0 <= tag <= MAX_TAG:
        raise FrameError(f"tag must be an integer in [0, {MAX_TAG}], not {tag!r}")
    return code | tag << CODE_BITS


def split_command(byte: int) -> tuple[int, int]:
    """``(code, tag)`` of a CMD byte."""
    return byte & ((1 << CODE_BITS) - 1), byte >> CODE_BITS


def encode_ping(tag: int = 0) -> bytes:
    return encode_frame(command_byte(PING, tag))


def encode_write(addr: int, words, tag: int = 0) -> bytes:
    words = list(words)
    _count(len(words))
    return encode_frame(command_byte(WRITE, tag),
                        _u32(addr, "addr") + b"".join(_u32(w, "word") for w in words))


def encode_read(addr: int, n: int, tag: int = 0) -> bytes:
    return encode_frame(command_byte(READ, tag), _u32(addr, "addr") + bytes([_count(n)]))


def encode_start(count: int, tag: int = 0) -> bytes:
    return encode_frame(command_byte(START, tag), _u32(count, "count"))


def config_hash(cfg) -> int:
    """CRC-32 of the config's JSON with sorted keys (what PING reports)."""
    return zlib.crc32(cfg.to_json(sort_keys=True).encode())


#: The PING identity of each design behind the bridge: its magic and the one-byte fields that
#: follow ``addr_bits`` (read from the design's config).
DESIGN_IDS = {
    "sta": (b"nmST", ("rows", "cols", "lanes", "n", "m")),
    "conv": (b"nmCV", ("p_out", "p_in", "data_bits", "coef_bits", "mult_bits")),
}


def split_words(value: int, bits: int) -> list[int]:
    """An unsigned ``bits``-bit ``value`` as the link's 32-bit words, lowest first."""
    value = int(value)
    if value < 0 or value >> bits:
        raise ValueError(f"value must be a {bits}-bit unsigned integer, not {value}")
    return [(value >> (32 * i)) & 0xFFFFFFFF for i in range(-(-bits // 32))]


def join_words(words) -> int:
    """The inverse of :func:`split_words` (each word taken modulo 2**32)."""
    value = 0
    for i, w in enumerate(words):
        value |= (int(w) & 0xFFFFFFFF) << (32 * i)
    return value


def host_map(cfg):
    """The host address map of the design ``cfg`` configures: the module
    :mod:`nmaccel.spec.sta_isa` (STA) or :mod:`nmaccel.spec.conv_host` (conv engine); both
    answer ``addr_bits(cfg)``, ``host_address(cfg, space, entry, sub)`` and ``CSR`` (with
    START and STATUS)."""
    kind = getattr(cfg, "kind", None)
    if kind == "sta":
        from nmaccel.spec import sta_isa
        return sta_isa
    if kind == "conv":
        from nmaccel.spec import conv_host
        return conv_host
    raise TypeError(f"config must be a StaConfig or a ConvConfig, not {type(cfg).__name__}")


def host_addr_bits(cfg) -> int:
    """Bits of the host address space of the design ``cfg`` configures (STA or conv)."""
    return host_map(cfg).addr_bits(cfg)


def csr_address(cfg, name: str) -> int:
    """The host address of the design's CSR ``name`` (``"START"``, ``"STATUS"``, ...)."""
    hmap = host_map(cfg)
    return hmap.host_address(cfg, "CSR", hmap.CSR[name])


@dataclass(frozen=True)
class BoardId:
    """What a PING reply says about the design on the board: ``design`` (``"sta"`` or
    ``"conv"``, from the magic), the protocol ``version``, ``max_words``, ``addr_bits``, the
    design's ``shape`` fields (:data:`DESIGN_IDS`; also readable by name: ``ident.rows``,
    ``ident.p_out``) and the ``config_hash``."""

    design: str
    version: int
    max_words: int
    addr_bits: int
    shape: tuple
    config_hash: int

    def __getattr__(self, name: str):
        design = self.__dict__.get("design")
        names = DESIGN_IDS[design][1] if design in DESIGN_IDS else ()
        if name in names:
            return self.shape[names.index(name)]
        raise AttributeError(f"{type(self).__name__} of a {design} design has no {name!r}")

    @classmethod
    def of(cls, cfg) -> BoardId:
        addr_bits = host_addr_bits(cfg)              # (a clear error for any other config)
        kind = cfg.kind
        return cls(kind, VERSION, MAX_WORDS, addr_bits,
                   tuple(getattr(cfg, f) for f in DESIGN_IDS[kind][1]), config_hash(cfg))

    def named_fields(self) -> dict:
        names = DESIGN_IDS[self.design][1]
        return {"design": self.design, "version": self.version, "max_words": self.max_words,
                "addr_bits": self.addr_bits, **dict(zip(names, self.shape)),
                "config_hash": self.config_hash}

    def differences(self, other: BoardId) -> list[str]:
        """``"field: self vs other"`` for every field that differs."""
        if self.design != other.design:
            return [f"design: {self.design} vs {other.design}"]
        a, b = self.named_fields(), other.named_fields()
        return [f"{name}: {a[name]} vs {b[name]}" for name in a if a[name] != b[name]]


def id_bytes(cfg) -> bytes:
    """The PING reply DATA for ``cfg`` (the gateware stores these bytes as a ROM)."""
    ident = BoardId.of(cfg)
    names = ("version", "max_words", "addr_bits") + DESIGN_IDS[ident.design][1]
    fields = [ident.version, ident.max_words, ident.addr_bits, *ident.shape]
    for name, value in zip(names, fields):
        if not 0 <= value <= 0xFF:
            raise FrameError(f"{name} = {value} does not fit the one-byte PING field")
    return DESIGN_IDS[ident.design][0] + bytes(fields) + ident.config_hash.to_bytes(4, "little")


def parse_id(data: bytes) -> BoardId:
    """Decode PING reply DATA; raises :class:`FrameError` on a wrong size or magic."""
    data = bytes(data)
    if len(data) != ID_BYTES:
        raise FrameError(f"PING reply must carry {ID_BYTES} bytes, not {len(data)}")
    design = next((d for d, (magic, _) in DESIGN_IDS.items() if data[:4] == magic), None)
    if design is None:
        raise FrameError(f"PING reply magic is {data[:4]!r}, expected one of "
                         f"{[magic for magic, _ in DESIGN_IDS.values()]} "
                         "(not an nmaccel UART bridge?)")
    return BoardId(design, data[4], data[5], data[6], tuple(data[7:7 + len(ID_FIELDS) - 1]),
                   int.from_bytes(data[-4:], "little"))
