"""The journal: the account's history (transactions, net-liq history), the trades built from it,
and their load into the warehouse with the reconciliation check and the journal's pictures.

``account_history`` follows the snapshot rule (it lands in the current session only) but is
incremental, so a missed evening loses nothing: the next one asks from the last transaction landed.
Each partition is merged with what that partition already held, so re-running an evening never
loses a row it landed before nor duplicates one (``id`` is the grain).
"""


from datetime import date, timedelta
from typing import Iterator

import dagster as dg
import pandas as pd
from pydantic import Field

from variance_pipeline.defs.account import _open_accounts
from variance_pipeline.defs.common import ASSET_COMMON, OWNERS, land_validated
from variance_pipeline.defs.metadata import column_schema, landed, nothing_landed, picture, preview, schema_check_spec, validation_check
from variance_pipeline.defs.partitions import run_sessions
from variance_pipeline.defs.resources import PipelineResource, WarehouseResource
from variance_pipeline.defs.snapshot_assets import SnapshotCall, SnapshotRows, snapshot_asset
from variance_pipeline.lake.atomic import is_disk_full
from variance_pipeline.lake.layout import Lake
from variance_pipeline.reports.charts import render_journal_charts
from variance_pipeline.schemas.dataset import Dataset
from variance_pipeline.schemas.journal import JOURNAL, NET_LIQ_HISTORY, TRADE_TRANSACTIONS, TRADES, TRANSACTIONS
from variance_pipeline.schemas.validate import validate_frame
from variance_pipeline.sources.tastytrade_history import (
    balance_snapshots,
    net_liq_history,
    transactions_history,
    transactions_since,
)
from variance_pipeline.sources.tastytrade_journal import balance_snapshot_rows, net_liq_rows, transaction_rows
from variance_pipeline.transforms.trades import build_journal
from variance_pipeline.warehouse.load import load_sessions

OVERLAP = timedelta(days=3)
"""A later evening asks again for the last three days landed: rows the broker posts late (a
correction, an exercise booked the next morning) are caught, and merged by id."""
RECENT_WINDOW = "1m"
"""The net-liq history a later evening asks for (the whole history is asked once)."""


def landed_rows(lake: Lake, dataset: Dataset, before: date | None = None) -> pd.DataFrame:
    """Every landed partition of ``dataset`` (those before ``before`` only, if given), concatenated."""
    days = [d for d in lake.partition_days(dataset.name) if before is None or d < before]
    frames = [lake.read_partition(dataset.name, d) for d in days]
    return pd.concat(frames, ignore_index=True) if frames else dataset.empty()


def _records(frame: pd.DataFrame) -> list[dict]:
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def _merged(tonight: pd.DataFrame, fetched: list[dict], earlier: pd.DataFrame, key: list[str]) -> list[dict]:
    """Tonight's partition: what it held, plus what was fetched and is not landed in an earlier one
    (fetched rows win over tonight's older copy)."""
    rows = {tuple(r[k] for k in key): r for r in _records(tonight)}
    known = set(map(tuple, earlier[key].astype(object).itertuples(index=False))) if len(earlier) else set()
    for row in fetched:
        k = tuple(row[c] for c in key)
        if k not in known:
            rows[k] = row
    return list(rows.values())


def _account_history(call: SnapshotCall) -> SnapshotRows:
    lake, session = call.lake, call.session
    earlier = landed_rows(lake, TRANSACTIONS, before=session)
    tonight = lake.read_partition(TRANSACTIONS.name, session) if lake.has_partition(TRANSACTIONS.name, session) else TRANSACTIONS.empty()
    everything = pd.concat([earlier, tonight], ignore_index=True)
    history_earlier = landed_rows(lake, NET_LIQ_HISTORY, before=session)
    history_tonight = (lake.read_partition(NET_LIQ_HISTORY.name, session) if lake.has_partition(NET_LIQ_HISTORY.name, session)
                       else NET_LIQ_HISTORY.empty())
    history_all = pd.concat([history_earlier, history_tonight], ignore_index=True)
    own_balances = lake.partition_days("balances")
    fetched: list[dict] = []
    points: list[dict] = []
    modes: dict[str, str] = {}
    for number in _open_accounts(call):
        mine = everything[everything["account_number"] == number]
        if mine.empty:
            items = transactions_history(call.client, number, call.on_raw).items
            modes[number] = f"whole history ({len(items)} transactions)"
        else:
            since = pd.Timestamp(mine["executed_at"].max()).to_pydatetime() - OVERLAP
            items = transactions_since(call.client, number, since, call.on_raw).items
            modes[number] = f"since {since.isoformat()} ({len(items)} transactions)"
        rows = transaction_rows(items, fetched_at=call.fetched_at)
        fetched += rows
        first_day = min([r["transaction_date"] for r in rows] + list(mine["transaction_date"]), default=session)
        if history_all[history_all["account_number"] == number].empty:
            found = net_liq_rows(number, net_liq_history(call.client, number, "all", call.on_raw), fetched_at=call.fetched_at)
            end = (own_balances[0] if own_balances else session) - timedelta(days=1)
            if first_day <= end:
                covered = {r["session_date"] for r in found}
                snapshots = balance_snapshot_rows(
                    number, balance_snapshots(call.client, number, first_day, end, call.on_raw), fetched_at=call.fetched_at
                )
                found += [r for r in snapshots if r["session_date"] not in covered]
        else:
            found = net_liq_rows(number, net_liq_history(call.client, number, RECENT_WINDOW, call.on_raw),
                                 fetched_at=call.fetched_at)
        points += found
    transactions = _merged(tonight, fetched, earlier, ["id"])
    history = _merged(history_tonight, points, pd.DataFrame(columns=["account_number", "session_date"]),
                      ["account_number", "session_date"])
    return SnapshotRows(
        {TRANSACTIONS.name: transactions, NET_LIQ_HISTORY.name: history},
        {TRANSACTIONS.name: {"fetched": dg.MetadataValue.md("\n".join(f"- {a}: {m}" for a, m in modes.items()) or "_none_"),
                             "new_transactions": len([r for r in fetched if r["id"] not in set(earlier["id"])])},
         NET_LIQ_HISTORY.name: {"points": len(points)}},
    )


account_history = snapshot_asset(
    name="account_history",
    datasets=[TRANSACTIONS, NET_LIQ_HISTORY],
    fetch=_account_history,
    deps=["accounts"],
    descriptions={
        "transactions": "Every transaction of every open account (GET /accounts/{n}/transactions): the whole "
        "history on the first evening (oldest first, 2000 a page, one request per page), later only what is new "
        "(newest first, from the last executed-at landed less 3 days; merged by id). Raw pages land before "
        "parsing; a missing or truncated page fails naming the account and the page, and nothing landed is lost.",
        "net_liq_history": "Each account's net liquidating value per session: the net-liq history (time-back=all "
        "once, then the last month) and end-of-day balance snapshots for the days before this project's own "
        "balances began.",
    },
)


@dg.multi_asset(
    name="journal",
    specs=[
        dg.AssetSpec(
            dataset.name, deps=["transactions", "position_pnl"], group_name="transform", kinds={"python", "parquet"},
            description=description, owners=OWNERS, metadata={"dagster/column_schema": column_schema(dataset)},
        )
        for dataset, description in (
            (TRADES, "Trades (chains) from every landed transaction: legs of one order, rolls, assignments (the "
             "wheel), strategy, realised P&L, max profit, % captured, outcome; open trades carry the unrealised "
             "P&L of the evening's position_pnl. Entry context is filled by the warehouse (journal_book)."),
            (TRADE_TRANSACTIONS, "Which trade each transaction belongs to, its role and signed quantity."),
        )
    ],
    check_specs=[schema_check_spec(TRADES), schema_check_spec(TRADE_TRANSACTIONS)],
    partitions_def=ASSET_COMMON["partitions_def"],
    backfill_policy=ASSET_COMMON["backfill_policy"],
)
def journal(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    lake = pipeline.lake
    session = run_sessions(context)[-1]
    transactions = landed_rows(lake, TRANSACTIONS)
    if transactions.empty:
        reason = "no transactions landed yet: materialize account_history on an evening (snapshots cannot look back)"
        yield from nothing_landed(reason, [(TRADES.check_name, TRADES.name), (TRADE_TRANSACTIONS.check_name,
                                                                               TRADE_TRANSACTIONS.name)],
                                  assets=[TRADES.name, TRADE_TRANSACTIONS.name])
        return
    pnl = lake.read_partition("position_pnl", session) if lake.has_partition("position_pnl", session) else None
    built = build_journal(transactions, session, pnl)
    if built.orphans:
        context.log.warning(f"journal: {built.orphans} closing row(s) found no open lot (positions opened before the "
                            "journal's first transaction): left out of every trade")
    outcomes = []
    for dataset, frame in ((TRADES, built.trades), (TRADE_TRANSACTIONS, built.trade_transactions)):
        complete = frame.copy()
        for name in dataset.missing_columns(complete.columns):
            complete[name] = None
        outcome = validate_frame(dataset, dataset.conform(complete))
        outcomes.append(outcome)
        extra = {}
        if dataset is TRADES:
            closed = outcome.valid[outcome.valid["status"] == "closed"]
            extra = {
                "open_trades": int((outcome.valid["status"] == "open").sum()),
                "closed_trades": len(closed),
                "realized_pnl_closed": round(float(closed["realized_pnl"].sum()), 2),
                "orphan_rows": built.orphans,
                "preview": preview(outcome.valid.sort_values("opened_at", ascending=False)[
                    ["trade_id", "underlying_symbol", "strategy", "status", "rolls", "realized_pnl", "outcome"]], rows=15),
            }
        yield dg.MaterializeResult(asset_key=dataset.name, metadata={**land_validated(lake, dataset.name, session, outcome), **extra})
    for outcome in outcomes:
        yield validation_check(outcome)


OUTCOMES_SQL = """
SELECT dimension, bucket, trades, round(win_rate, 3) AS win_rate, round(avg_pnl, 2) AS avg_pnl,
       round(total_pnl, 2) AS total_pnl, round(avg_days_held, 1) AS avg_days,
       round(avg_pct_of_max_profit_captured, 3) AS avg_pct_max, round(expectancy_per_day, 2) AS per_day,
       round(expectancy_per_bp_day * 1000, 4) AS per_1000_bp_day
FROM strategy_outcomes
"""
MONTHS_SQL = """
SELECT account_number, month, round(realized_pnl, 2) AS realized_pnl, round(fees, 2) AS fees,
       round(premium_sold, 2) AS premium_sold, trades, wins
FROM pnl_by_month WHERE account_number = 'ALL' ORDER BY month DESC
"""


@dg.asset(
    deps=["transactions", "net_liq_history", "trades", "trade_transactions", "account_book"],
    group_name="warehouse",
    kinds={"duckdb"},
    pool="duckdb",
    description="Loads the journal (transactions, net-liq history, trades) into the warehouse in one transaction "
    "(idempotent), fills each trade's entry context from our own history (IV rank, IV30, IV - HV20, VRP, short "
    "delta, BP used on the opening evening) and shows strategy_outcomes and pnl_by_month, with net liq over "
    "time against realised P&L by month and the outcome by IV rank at entry.",
    metadata={"dagster/column_schema": column_schema(TRADES)},
    **ASSET_COMMON,
)
def journal_book(
    context: dg.AssetExecutionContext, pipeline: PipelineResource, warehouse_db: WarehouseResource
) -> dg.MaterializeResult:
    sessions = run_sessions(context)
    with warehouse_db.publish(context.run_id) as con:
        report = load_sessions(con, pipeline.lake, sessions, run_id=context.run_id, tables=JOURNAL, refresh_history=False)
        outcomes = con.execute(OUTCOMES_SQL).df()
        months = con.execute(MONTHS_SQL).df()
        trades = int(con.execute("SELECT count(*) FROM trades").fetchone()[0])
    metadata: dict = {}
    try:
        with warehouse_db.connect() as con:
            for key, (path, png, caption) in render_journal_charts(con, pipeline.lake.reports_dir).items():
                metadata.update(picture(key, path, png, caption))
    except Exception as exc:  # noqa: BLE001 - a picture is never worth a red run
        if is_disk_full(exc):
            raise
        context.log.warning(f"journal charts not drawn: {exc!r}")
    return dg.MaterializeResult(
        metadata={
            **landed(TRADES.name, trades),
            "rows_loaded": report.total_rows,
            **{f"rows_loaded_{t}": n for t, n in report.rows_by_table.items()},
            "strategy_outcomes": preview(outcomes, rows=40),
            "pnl_by_month": preview(months, rows=24),
            **metadata,
        }
    )


class ReconciliationConfig(dg.Config):
    tolerance_usd: float | None = Field(
        default=None, description="override the warehouse's reconciliation_settings.tolerance_usd (USD)"
    )


@dg.asset_check(
    asset="journal_book",
    description="Each account's journal adds up: for every period between two evenings (and from the first "
    "transaction), realised P&L + change of unrealised P&L = change of net liq - deposits and withdrawals, "
    "within $1.00 + $0.01 per transaction and position of the period (reconciliation_settings); names the "
    "account, the period and the difference when it does not.",
)
def journal_reconciles(config: ReconciliationConfig, warehouse_db: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse_db.connect() as con:
        rows = con.execute("SELECT * FROM account_reconciliation").df()
    if rows.empty:
        return dg.AssetCheckResult(passed=True, metadata={"skipped": "no evening with balances, positions and a journal"})
    if config.tolerance_usd is not None:
        rows["tolerance"] = config.tolerance_usd + (rows["tolerance"] - rows["tolerance"].min())
    beyond = rows[rows["difference"].abs() > rows["tolerance"]]
    lines = [
        f"{r.account_number} {r.from_date or 'first transaction'}..{r.to_date}: realised {r.realized_pnl:,.2f} + change "
        f"of unrealised {r.unrealized_change:,.2f} vs change of net liq {r.net_liq_change:,.2f} less transfers "
        f"{r.transfers:,.2f}: difference {r.difference:+,.2f} (tolerance {r.tolerance:,.2f})"
        for r in beyond.itertuples()
    ]
    worst = rows.loc[rows["difference"].abs().idxmax()]
    return dg.AssetCheckResult(
        passed=beyond.empty,
        severity=dg.AssetCheckSeverity.ERROR,
        description=("; ".join(lines[:5]) if lines else
                     f"{len(rows)} period(s) reconcile; largest difference {worst['difference']:+.2f} USD"),
        metadata={
            "periods": len(rows),
            "periods_beyond_tolerance": len(beyond),
            "largest_difference": round(float(worst["difference"]), 4),
            "largest_difference_account": str(worst["account_number"]),
            "reconciliation": preview(rows, rows=20),
        },
    )
