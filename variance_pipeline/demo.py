"""``make demo``: the whole EOD pipeline on the embedded simulator, ending with IV history.

It does what the scheduled job would have done over the last ``--evenings`` sessions (default 30):

1. start the simulator with its clock (``--now``) at 22:00 UTC of the first of those evenings;
2. backfill enough sessions for HV252 through the real ``dagster asset materialize`` CLI, one
   ranged run ending at that first evening (so its snapshots land), ``VARIANCE_NOW`` = that clock;
3. replay every later evening, one run each, stepping the pipeline's clock and the simulator's
   (``POST /_sim/clock``) together to 22:00 UTC of that session (the last one: at most the real
   ``VARIANCE_NOW``). Snapshots cannot look back, so this replay is the only way to get a history
   of implied volatility: each evening lands exactly what the APIs say on that evening.

Honest shortcuts, for time only: the evening runs are ``dg.materialize`` calls in this one
process (the code location loaded from ``defs/`` as Dagster loads it, resources included, the same
``DAGSTER_HOME`` instance, so they show in the UI), because one ``dagster`` CLI process per evening
costs several seconds of start-up each; and they ask the local simulator's chart endpoint at 20
requests per second instead of the polite ~1/s for Yahoo (unless ``VARIANCE_YAHOO_RATE`` is set);
and only the last evening draws the charts (``WarehouseConfig.charts``): each evening's pictures
would be redrawn by the next, and the data is the same.

With 30 evenings the first 9 have their 21 later sessions, so ``vrp`` has complete rows (the
rest stay NULL until their window closes) and ``iv_rank_own`` has values (it needs 20 sessions).
The backfill covers 150 sessions (``--sessions``): HV252 has values from the first one, because
realised volatility reads its 252-session lookback from the candle cache, not from earlier
partitions; a longer backfill only lengthens the history the charts draw, at about 0.3 s a session.
It ends by printing tonight's book (``account_summary``, ``manage_tonight``), the journal's
``strategy_outcomes``, then ``vol_dashboard`` (with ``iv_rank_own``) and ``vrp_summary``, then the path of
the last evening's report (``evening_report``, the page a trader opens; built again from the
warehouse when that run did not write it).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path

import dagster as dg
import httpx

from variance_pipeline.calendar import last_closed_session, sessions_back
from variance_pipeline.lake.layout import Lake
from variance_pipeline.reports.evening import build_report
from variance_pipeline.settings import PROJECT_ROOT, ConfigurationError, Settings
from variance_pipeline.warehouse.connection import warehouse_connection

DASHBOARD_SQL = """
SELECT symbol, session_date, round(price, 2) AS price,
       round(implied_volatility, 4) AS iv, round(iv_rank, 3) AS iv_rank,
       round(iv_rank_own, 3) AS iv_rank_own,
       round(hv20, 4) AS hv20, round(hv252, 4) AS hv252,
       round(iv_hv20_spread, 4) AS iv_hv20_spread, days_to_earnings
FROM vol_dashboard
ORDER BY iv_hv20_spread DESC NULLS LAST
"""

SUMMARY_SQL = """
SELECT account_number, as_of_date, round(net_liquidating_value, 0) AS net_liq, round(bp_used_pct, 3) AS bp_used,
       round(bp_guideline_max_pct, 2) AS bp_max, round(theta_per_day, 1) AS theta_day,
       round(theta_pct_of_net_liq * 100, 3) AS theta_pct, round(beta_weighted_delta, 1) AS bwd_spy_sh,
       round(bwd_dollars_per_spy_1pct, 0) AS bwd_per_1pct, round(vega_per_vol_point, 1) AS vega, groups_to_manage
FROM account_summary
"""

MANAGE_SQL = """
SELECT account_number, underlying_symbol, expiration_date, days_to_expiration AS dte,
       round(pct_of_max_profit, 2) AS pct_max, round(short_delta, 2) AS short_delta, round(unrealized_pnl, 0) AS pnl,
       array_to_string(reasons, ', ') AS reasons
FROM manage_tonight
"""

OUTCOMES_SQL = """
SELECT dimension, bucket, trades, round(win_rate, 2) AS win_rate, round(avg_pnl, 0) AS avg_pnl,
       round(total_pnl, 0) AS total_pnl, round(avg_days_held, 1) AS avg_days,
       round(avg_pct_of_max_profit_captured, 2) AS pct_max, round(expectancy_per_day, 1) AS per_day
FROM strategy_outcomes
WHERE dimension IN ('strategy', 'iv_rank_at_entry')
"""

VRP_SQL = """
SELECT symbol, dates, dates_pending, round(mean_iv30, 4) AS mean_iv30,
       round(mean_hv_forward_21, 4) AS mean_hv_fwd21, round(mean_vrp, 4) AS mean_vrp,
       round(positive_share, 2) AS positive_share, first_date, last_date
FROM vrp_summary
ORDER BY mean_vrp DESC NULLS LAST
"""
DEMO_YAHOO_RATE = 20.0  # the local simulator, not Yahoo: see the module docstring


def evening_clock(day: date, now: datetime) -> datetime:
    """22:00 UTC of ``day`` (after the close, DST or not), never later than ``now``."""
    return min(datetime(day.year, day.month, day.day, 22, tzinfo=timezone.utc), now)


def set_simulator_clock(url: str, clock: datetime) -> None:
    reply = httpx.post(f"{url}/_sim/clock", json={"now": clock.isoformat()}, timeout=10)
    reply.raise_for_status()


def replay_evenings(settings: Settings, evenings: list[date], now: datetime, home: Path) -> None:
    """One run per evening in this process, the pipeline's clock and the simulator's stepped together."""
    import dagster as dg

    from variance_pipeline.definitions import environment, load_definitions

    os.environ["DAGSTER_HOME"] = str(home)
    rate = settings.yahoo_rate if os.environ.get("VARIANCE_YAHOO_RATE") else DEMO_YAHOO_RATE
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # the event log stays in the instance
    started = time.monotonic()
    with dg.DagsterInstance.get() as instance:
        for i, day in enumerate(evenings, start=1):
            clock = evening_clock(day, now)
            set_simulator_clock(settings.tastytrade_api_url, clock)
            evening = dataclasses.replace(settings, now_override=clock, yahoo_rate=rate)
            with environment(evening.environment()):  # the code location as Dagster loads it
                definitions = load_definitions()
            t = time.monotonic()
            # The pictures of every evening but the last would be redrawn by the next one.
            charts = {"ops": {"warehouse": {"config": {"charts": i == len(evenings)}}}}
            result = dg.materialize(
                [*definitions.assets, *(definitions.asset_checks or [])], resources=definitions.resources,
                partition_key=str(day),
                instance=instance, raise_on_error=False, run_config={**quiet, **charts},
            )
            if not result.success:
                failure = result.get_run_failure_event()
                raise SystemExit(f"the run of evening {day} failed: {failure.message if failure else 'see the UI'}")
            print(f"  evening {i}/{len(evenings)} {day} (clock {clock.isoformat()}): "
                  f"run succeeded in {time.monotonic() - t:.1f} s", flush=True)
    print(f"  {len(evenings)} evenings replayed in {time.monotonic() - started:.0f} s", flush=True)


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
    """DAGSTER_HOME under the data dir, holding the project's dagster.yaml, its storage created.

    Two processes that both find a brand-new DAGSTER_HOME (the schedule's run and a UI launch,
    two terminals) would each create the SQLite run storage and leave it with two schema heads,
    unusable; opening the instance once here creates it before any run can race for it.
    """
    home = Path(os.environ.get("DAGSTER_HOME") or settings.data_dir / "dagster_home")
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PROJECT_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.get_runs(limit=1)
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
    parser.add_argument(
        "--sessions", type=int, default=150,
        help="sessions to load, evenings included (HV252 has values from the first: its lookback is cached)",
    )
    parser.add_argument(
        "--evenings", type=int, default=30,
        help="the last N sessions replayed evening by evening (snapshot history; VRP needs 21 later sessions)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.evenings <= args.sessions:
        parser.error("--evenings must be between 1 and --sessions")

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

    now = settings.now()
    sessions = sessions_back(last_closed_session(now), args.sessions)
    evenings = sessions[-args.evenings:]
    first_clock = evening_clock(evenings[0], now)
    env["VARIANCE_NOW"] = first_clock.isoformat()
    started = time.monotonic()
    simulator = start_simulator(port, ["--now", first_clock.isoformat()])
    try:
        print(f"simulator on {env['VARIANCE_SIMULATOR_URL']}; data in {settings.data_dir_shown}", flush=True)
        log = settings.data_dir / "demo-run.log"
        log.unlink(missing_ok=True)
        print(f"backfill up to the first evening, clock VARIANCE_NOW={first_clock.isoformat()}", flush=True)
        materialize(["--partition-range", f"{sessions[0]}...{evenings[0]}"], env, log)
        if evenings[1:]:
            print(f"replaying {len(evenings) - 1} more evenings, {evenings[1]} .. {evenings[-1]}, one run each", flush=True)
            replay_evenings(settings, evenings[1:], now, Path(env["DAGSTER_HOME"]))
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)

    warehouse = Lake(settings.data_dir).warehouse_path
    print(f"\naccount_summary in {warehouse} (tonight's book: net liq, BP used against the VIX guideline, "
          "theta and beta-weighted delta sized to net liq):", flush=True)
    with warehouse_connection(warehouse, read_only=True) as con:
        con.sql(SUMMARY_SQL).show(max_width=200)
        print("manage_tonight: every trade with a reason to act tonight:")
        con.sql(MANAGE_SQL).show(max_width=200)
        print("strategy_outcomes: does the selling pay? Closed trades by strategy and by IV rank at entry "
              "(the journal, built from the broker's transactions):")
        con.sql(OUTCOMES_SQL).show(max_width=200)
        print("vol_dashboard (richest implied volatility over HV20 first):")
        con.sql(DASHBOARD_SQL).show(max_width=200)
        print("vrp_summary: implied (iv30) minus the next 21 sessions' realised volatility, complete windows only:")
        con.sql(VRP_SQL).show(max_width=200)
    report = evening_report(settings, evenings[-1])
    print(f"demo finished in {time.monotonic() - started:.0f} s")
    print(f"Query it yourself: .venv/bin/duckdb -readonly {warehouse}")
    print(f"The evening report (open it in a browser): {report}")
    return 0


def evening_report(settings: Settings, evening: date) -> Path:
    """The last evening's page as its run wrote it; rebuilt from the warehouse when it is missing."""
    lake = Lake(settings.data_dir)
    report = lake.reports_dir / f"evening-{evening.isoformat()}.html"
    if report.exists():
        return report
    return build_report(lake, clock=evening_clock(evening, settings.now()), fallback_evening=evening).files.dated


if __name__ == "__main__":
    sys.exit(main())
