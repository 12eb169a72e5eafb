"""``nmaccel board``: talk to an STA board over its UART (or to the simulated board).

Commands
    ``ping``      PING the board and compare its identity with the config (``--preset``).
    ``selftest``  malformed frames → error replies, the link keeps working.
    ``gemm``      a random N:M sparse GEMM (``--tokens``, ``--features``, ``-k``): load, run, read
                  back, compare bit-exact with the golden model, print the counters.

``--port /dev/ttyUSB0 --baud 115200`` picks a real board; ``--simulate verilator`` (or
``icarus``) runs the same driver against the Verilog StaUartTop over its UART pins instead.
Exit status: 0 ok, 1 a GEMM result differs from the golden model, 2 bad arguments or a link
error (wrong design, no reply, port missing).

Examples::

    nmaccel board ping --port /dev/ttyUSB0 --baud 115200 --preset ulx3s
    nmaccel board gemm --simulate verilator --preset tiny --tokens 8 --features 8 -k 32
"""

from __future__ import annotations

import argparse
import math

from nmaccel.cli.args import CommandError, positive_int, preset
from nmaccel.spec.uart_protocol import DEFAULT_BAUD

__all__ = ["DESCRIPTION", "HELP", "add_arguments", "run"]

HELP = "talk to an STA board over UART (ping, selftest, run a GEMM), or to the simulated board"
DESCRIPTION = __doc__


def add_arguments(p) -> None:
    p.add_argument("board_command", choices=["ping", "selftest", "gemm"], metavar="ACTION",
                   help="ping | selftest | gemm")
    link = p.add_mutually_exclusive_group(required=True)
    link.add_argument("--port", help="serial port of the board, e.g. /dev/ttyUSB0")
    link.add_argument("--simulate", choices=["verilator", "icarus"],
                      help="run against the simulated board (StaUartTop RTL) instead")
    p.add_argument("--baud", type=positive_int, default=DEFAULT_BAUD, help="serial baud rate")
    p.add_argument("--timeout", type=_seconds, default=1.0, help="serial read timeout (s)")
    p.add_argument("--preset", type=preset, default="tiny",
                   help="STA preset the board was built for")
    p.add_argument("--divisor", type=positive_int, default=8,
                   help="simulation: clock cycles per bit")
    p.add_argument("--tokens", type=positive_int, default=8, help="gemm: tokens")
    p.add_argument("--features", type=positive_int, default=8, help="gemm: output features")
    p.add_argument("-k", type=positive_int, default=32,
                   help="gemm: inner dimension (multiple of m)")
    p.add_argument("--seed", type=int, default=0, help="gemm: random seed")


#: Longest per-read timeout ``--timeout`` accepts (s).
MAX_TIMEOUT = 3600.0


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, not {text!r}") from None
    if not (math.isfinite(v) and 0 < v <= MAX_TIMEOUT):
        raise argparse.ArgumentTypeError(f"expected seconds in (0, {MAX_TIMEOUT:g}], not {text}")
    return v


def _report(command: str, value, program=None) -> int:
    if command == "ping":
        print(f"board: {value}\nmatches the config: yes")
    elif command == "selftest":
        for case, status in value.items():
            print(f"{case:16s} -> {status}")
        print("selftest: ok")
    else:
        verdict = value.check(program)
        print(f"bit-exact: {'yes' if all(verdict.values()) else 'NO'}  cycles: {value.cycles}")
        print("counters: " + ", ".join(f"{k}={v}" for k, v in value.counters.items()))
        print(f"link: {value.extra['bytes_out']} bytes out, {value.extra['bytes_in']} in, "
              f"{value.extra['frames']} frames, {value.wall_seconds:.2f} s")
        return 0 if all(verdict.values()) else 1
    return 0


def run(args) -> int:
    from nmaccel.boards.driver import BoardError, SerialTransport, StaBoard
    from nmaccel.model.sta_workloads import random_sparse_gemm
    command = args.board_command
    cfg = args.preset
    program = random_sparse_gemm(cfg, args.tokens, args.features, args.k, args.seed) \
        if command == "gemm" else None
    try:
        if args.simulate:
            from nmaccel.boards.simulated import board_session
            action = {"ping": ("check",), "selftest": ("selftest",), "gemm": ("run", program)}
            outcome = board_session(cfg, [action[command]], divisor=args.divisor,
                                    simulator=args.simulate)["outcomes"][0]
            if outcome[0] == "error":
                raise BoardError(f"{outcome[1]}: {outcome[2]}")
            value = outcome[1]
        else:
            transport = SerialTransport(args.port, args.baud, timeout=args.timeout)
            try:
                board = StaBoard(transport, cfg)
                value = {"ping": board.check, "selftest": board.selftest,
                         "gemm": lambda: board.run(program)}[command]()
            finally:
                transport.close()
    except BoardError as exc:
        raise CommandError(str(exc)) from None
    return _report(command, value, program)
