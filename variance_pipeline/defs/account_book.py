"""The ``account_book`` asset: the account snapshot into the warehouse, and the first screen a
trader reads (``account_summary``, ``manage_tonight``) in its metadata.

A step of its own after ``warehouse``: a balances or margin-report failure skips only this step,
never the market data of the evening.
"""

import dagster as dg

from variance_pipeline.defs.common import ASSET_COMMON
from variance_pipeline.defs.metadata import picture, preview
from variance_pipeline.defs.partitions import run_sessions
from variance_pipeline.defs.resources import BookRules, PipelineResource, WarehouseResource
from variance_pipeline.lake.atomic import is_disk_full
from variance_pipeline.reports.charts import render_account_chart
from variance_pipeline.schemas.registry import ACCOUNT_SNAPSHOT
from variance_pipeline.warehouse.load import load_sessions

SUMMARY_SQL = """
SELECT account_number, as_of_date, round(net_liquidating_value, 2) AS net_liq, round(net_liq_change, 2) AS change,
       round(bp_used_pct, 3) AS bp_used, round(bp_guideline_max_pct, 2) AS bp_max, round(theta_per_day, 2) AS theta,
       round(theta_pct_of_net_liq, 5) AS theta_pct, round(beta_weighted_delta, 1) AS bwd_spy_shares,
       round(bwd_dollars_per_spy_1pct, 0) AS bwd_per_1pct, round(vega_per_vol_point, 1) AS vega,
       largest_bp_underlying, round(largest_bp_share, 3) AS largest_bp_share, groups_to_manage
FROM account_summary
"""
MANAGE_SQL = """
SELECT account_number, underlying_symbol, expiration_date, days_to_expiration AS dte, round(pct_of_max_profit, 3) AS pct_max,
       round(short_delta, 2) AS short_delta, round(unrealized_pnl, 2) AS pnl, array_to_string(reasons, ', ') AS reasons
FROM manage_tonight
"""


@dg.asset(
    deps=["balances", "margin_requirements", "trading_status", "warehouse"],
    group_name="warehouse",
    kinds={"duckdb"},
    pool="duckdb",
    description="Loads the account snapshot (balances, margin report, trading status) into the warehouse "
    "(one transaction, idempotent) and shows tonight's book: account_summary (net liq, BP used against "
    "the VIX guideline, theta and beta-weighted delta sized to net liq) and manage_tonight (every trade "
    "with a reason to act), plus BP used and theta over the evenings.",
    **ASSET_COMMON,
)
def account_book(
    context: dg.AssetExecutionContext,
    pipeline: PipelineResource,
    warehouse_db: WarehouseResource,
    book_rules: BookRules,
) -> dg.MaterializeResult:
    sessions = run_sessions(context)
    with warehouse_db.publish(context.run_id) as con:
        report = load_sessions(
            con, pipeline.lake, sessions, run_id=context.run_id, tables=ACCOUNT_SNAPSHOT, refresh_history=False
        )
        con.execute(
            "INSERT OR REPLACE INTO book_settings VALUES (1, ?, ?, ?, ?)",
            [book_rules.profit_target, book_rules.manage_dte, book_rules.tested_delta, book_rules.bp_concentration],
        )
        summary = con.execute(SUMMARY_SQL).df()
        manage = con.execute(MANAGE_SQL).df()
    metadata: dict = {}
    try:
        with warehouse_db.connect() as con:
            drawn = render_account_chart(con, pipeline.lake.reports_dir)
        if drawn is not None:
            metadata = picture("account_chart", *drawn, "BP used % of net liq and theta per day over the evenings")
    except Exception as exc:  # noqa: BLE001 - a picture is never worth a red run
        if is_disk_full(exc):
            raise
        context.log.warning(f"account chart not drawn: {exc!r}")
    everything = summary[summary["account_number"] == "ALL"]
    headline = {}
    if len(everything):
        row = everything.iloc[0]
        headline = {
            key: float(row[column])
            for key, column in (("net_liquidating_value", "net_liq"), ("bp_used_pct", "bp_used"), ("theta_per_day", "theta"))
            if row[column] == row[column] and row[column] is not None  # NaN/None: not shown
        }
    return dg.MaterializeResult(
        metadata={
            "rows_loaded": report.total_rows,
            **{f"rows_loaded_{t}": n for t, n in report.rows_by_table.items()},
            "account_summary": preview(summary, rows=20),
            "manage_tonight": preview(manage, rows=50),
            "groups_to_manage": len(manage),
            **headline,
            **metadata,
        }
    )
