"""``make demo``: the whole EOD pipeline on the embedded simulator, ending with a SQL result.

It does what a user would do by hand: start the simulator, backfill enough sessions for HV252
through the real ``dagster`` CLI (one run for the range, then one for the latest session), and
query the warehouse read-only. Nothing here is special-cased for the demo.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from variance_pipeline.calendar import last_closed_session, sessions_back
from variance_pipeline.lake import Lake
from variance_pipeline.settings import PROJECT_ROOT, ConfigurationError, Settings
from variance_pipeline.warehouse.connection import warehouse_connection

DASHBOARD_SQL = """
SELECT symbol, session_date, round(price, 2) AS price,
       round(implied_volatility, 4) AS iv, round(iv_rank, 3) AS iv_rank,
       round(hv20, 4) AS hv20, round(hv252, 4) AS hv252,
       round(iv_hv20_spread, 4) AS iv_hv20_spread, days_to_earnings
FROM vol_dashboard
ORDER BY iv_hv20_spread DESC NULLS LAST
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_simulator(port: int, extra_args: list[str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``python -m variance_pipeline.simulator`` and wait until it answers."""
    process = subprocess.Popen(
        [sys.executable, "-m", "variance_pipeline.simulator", "--port", str(port), *(extra_args or [])],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"simulator exited with code {process.returncode} (is port {port} in use?)")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/_sim/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.terminate()
    raise RuntimeError(f"simulator did not answer on port {port} within 30 s")


def prepare_dagster_home(settings: Settings) -> Path:
    """DAGSTER_HOME under the data dir, holding the project's dagster.yaml."""
    home = Path(os.environ.get("DAGSTER_HOME") or settings.data_dir / "dagster_home")
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


def materialize(partition_args: list[str], env: dict[str, str], log: Path) -> None:
    """Run the real ``dagster`` CLI; its event log goes to ``log`` so the demo stays readable."""
    command = [
        str(Path(sys.executable).with_name("dagster")),
        "asset",
        "materialize",
        "-m",
        "variance_pipeline.definitions",
        "--select",
        "*",
        *partition_args,
    ]
    print("$ " + shlex.join(command), flush=True)
    started = time.monotonic()
    with log.open("a") as out:
        done = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        print("".join(log.read_text().splitlines(keepends=True)[-40:]), file=sys.stderr)
        raise SystemExit(f"dagster run failed (exit {done.returncode}); the whole log is in {log}")
    print(f"  run succeeded in {time.monotonic() - started:.0f} s (Dagster's event log: {log})", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="simulator port (0: a free one)")
    parser.add_argument("--sessions", type=int, default=300, help="sessions to backfill (HV252 needs 253)")
    args = parser.parse_args(argv)

    env = {**os.environ, "VARIANCE_SOURCE": os.environ.get("VARIANCE_SOURCE", "simulator")}
    if env["VARIANCE_SOURCE"] != "simulator":
        print("make demo runs on the simulator only; unset VARIANCE_SOURCE or set it to 'simulator'", file=sys.stderr)
        return 2
    port = args.port or free_port()
    env["VARIANCE_SIMULATOR_URL"] = f"http://127.0.0.1:{port}"
    env.pop("TASTYTRADE_API_URL", None)
    env.pop("YAHOO_CHART_URL", None)
    try:
        settings = Settings.from_env(env)
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    env["DAGSTER_HOME"] = str(prepare_dagster_home(settings))

    sessions = sessions_back(last_closed_session(settings.now()), args.sessions)
    simulator_args = ["--now", settings.now_override.isoformat()] if settings.now_override else []
    simulator = start_simulator(port, simulator_args)
    try:
        print(f"simulator on {env['VARIANCE_SIMULATOR_URL']}; data in {settings.data_dir}", flush=True)
        log = settings.data_dir / "demo-run.log"
        log.unlink(missing_ok=True)
        materialize(["--partition-range", f"{sessions[0]}...{sessions[-2]}"], env, log)
        materialize(["--partition", str(sessions[-1])], env, log)
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)

    warehouse = Lake(settings.data_dir).warehouse_path
    print(f"\nvol_dashboard in {warehouse} (richest implied volatility over HV20 first):", flush=True)
    with warehouse_connection(warehouse, read_only=True) as con:
        con.sql(DASHBOARD_SQL).show(max_width=200)
    print(f"Query it yourself: .venv/bin/duckdb -readonly {warehouse}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
