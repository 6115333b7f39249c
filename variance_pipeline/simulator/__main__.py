"""``python -m variance_pipeline.simulator`` / ``variance-simulator``: run the simulator standalone.

Prints exactly one line, ``simulator listening on http://HOST:PORT`` (flushed, with the real port
when ``--port 0``), so scripts can wait for it and read the URL, then serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType

from variance_pipeline.simulator.faults import FaultRule, parse_spec
from variance_pipeline.simulator.server import DEFAULT_PER_PAGE, SimulatorServer

DEFAULT_PORT = 8765


def _instant(text: str) -> datetime:
    """ISO-8601 with an offset ("Z" allowed): a clock must never be ambiguous."""
    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"--now {text!r} needs a UTC offset, e.g. 2025-11-24T21:30:00+00:00")
    return parsed.astimezone(timezone.utc)


def _faults(text: str) -> list[FaultRule]:
    try:
        return parse_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--fault {text!r}: {exc}") from exc


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def _symbols(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="variance-simulator", description="Serve the simulated Tastytrade and Yahoo chart APIs over HTTP."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port (printed)")
    parser.add_argument("--now", type=_instant, default=None, help="market clock, ISO-8601 with offset; default real time")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--replay", type=Path, default=None, metavar="DIR", help="serve recorded responses from DIR")
    parser.add_argument(
        "--verbatim", action="store_true",
        help="with --replay: send recorded accounts, positions and margin configuration byte for byte",
    )
    parser.add_argument("--client-secret", default=None, help="accept only this OAuth client secret")
    parser.add_argument("--refresh-token", default=None, help="accept only this OAuth refresh token")
    parser.add_argument("--token-ttl", type=float, default=900.0, metavar="SECONDS", help="access-token lifetime")
    parser.add_argument(
        "--rotate-refresh-tokens", action="store_true",
        help="answer each grant with a new refresh token; then accept only the newest",
    )
    parser.add_argument(
        "--per-page", type=_positive, default=DEFAULT_PER_PAGE, metavar="N",
        help=f"positions page size when the client sends no per-page (default {DEFAULT_PER_PAGE})",
    )
    parser.add_argument(
        "--delisted", type=_symbols, default=None, metavar="SYM,SYM",
        help="well-formed symbols to answer as unknown (default: NOPE,GONE; '' for none)",
    )
    parser.add_argument(
        "--universe", type=int, default=0, metavar="N",
        help="add N synthetic underlyings held in extra accounts 5WU00001... (50 per account)",
    )
    parser.add_argument(
        "--fault", type=_faults, action="append", default=[], metavar="SPEC",
        help='repeatable; JSON rule(s) or ENDPOINT:KIND[:key=value]..., e.g. chart:429:count=2:retry_after=3',
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbatim and args.replay is None:
        parser.error("--verbatim goes with --replay")
    server = SimulatorServer(
        host=args.host,
        port=args.port,
        now=args.now,
        seed=args.seed,
        replay_dir=args.replay,
        client_secret=args.client_secret,
        refresh_token=args.refresh_token,
        token_ttl=args.token_ttl,
        faults=[rule for rules in args.fault for rule in rules],
        delisted=args.delisted,
        universe=args.universe,
        rotate_refresh_tokens=args.rotate_refresh_tokens,
        per_page=args.per_page,
        verbatim=args.verbatim,
    )
    stopped = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    with server:
        print(f"simulator listening on {server.url}", flush=True)
        stopped.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
