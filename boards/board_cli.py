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

import numpy as np

__all__ = ["DESCRIPTION", "HELP", "add_arguments", "random_sparse_gemm", "run"]

HELP = "talk to an STA board over UART (ping, selftest, run a GEMM), or to the simulated board"
DESCRIPTION = __doc__


def random_sparse_gemm(cfg, tokens: int, features: int, k: int, seed: int = 0):
    """A :class:`~nmaccel.model.sta_program.StaProgram` of one random ``n``:``m`` sparse GEMM
    (int8 outputs, scaled to spread over the int8 range) with its golden output."""
    from nmaccel.model.nm import compress, nm_mask
    from nmaccel.model.sta_program import GemmSpec, compile_gemm
    if k % cfg.m:
        raise ValueError(f"k must be a multiple of m={cfg.m} for an N:M sparse GEMM, not {k}")
    rng = np.random.default_rng(seed)
    w = rng.integers(-127, 128, (features, k))
    w = w * nm_mask(np.abs(w) + rng.random(w.shape), cfg.n, cfg.m).astype(np.int64)
    x = rng.integers(-128, 128, (tokens, k))
    shift = 20
    span = 128 * 128 * np.sqrt(k * cfg.n / cfg.m)
    mult = np.full(features, int(max(1, min((1 << cfg.requant_mult_bits) - 1,
                                             100 / span * (1 << shift)))))
    spec = GemmSpec(x, compress(w, cfg.n, cfg.m), bias=rng.integers(-5000, 5000, features),
                    mult=mult, shift=np.full(features, shift), osel=0, name="y")
    return compile_gemm(spec, cfg)


def add_arguments(p) -> None:
    p.add_argument("board_command", choices=["ping", "selftest", "gemm"], metavar="ACTION",
                   help="ping | selftest | gemm")
    link = p.add_mutually_exclusive_group(required=True)
    link.add_argument("--port", help="serial port of the board, e.g. /dev/ttyUSB0")
    link.add_argument("--simulate", choices=["verilator", "icarus"],
                      help="run against the simulated board (StaUartTop RTL) instead")
    p.add_argument("--baud", type=int, default=115200, help="serial baud rate")
    p.add_argument("--timeout", type=float, default=1.0, help="serial read timeout (s)")
    p.add_argument("--preset", default="tiny", help="STA preset the board was built for")
    p.add_argument("--divisor", type=int, default=8, help="simulation: clock cycles per bit")
    p.add_argument("--tokens", type=int, default=8, help="gemm: tokens")
    p.add_argument("--features", type=int, default=8, help="gemm: output features")
    p.add_argument("-k", type=int, default=32, help="gemm: inner dimension (multiple of m)")
    p.add_argument("--seed", type=int, default=0, help="gemm: random seed")


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
    from nmaccel.spec.config import sta_preset
    from nmaccel.sim.cli import CommandError
    command = args.board_command
    cfg = sta_preset(args.preset)
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
