"""The ``warehouse`` asset: the run's sessions from the lake into DuckDB, plus the vol chart."""

from datetime import date

import dagster as dg
import duckdb
from pydantic import Field

from variance_pipeline.reports.charts import render_risk_chart, render_vol_chart, render_vrp_chart
from variance_pipeline.defs.common import ASSET_COMMON, run_universe
from variance_pipeline.defs.metadata import path_value, picture, preview
from variance_pipeline.defs.partitions import run_sessions
from variance_pipeline.defs.resources import PipelineResource, WarehouseResource
from variance_pipeline.lake.layout import Lake
from variance_pipeline.lake.atomic import is_disk_full
from variance_pipeline.schemas.registry import MARKET_AND_POSITIONS
from variance_pipeline.warehouse.load import load_sessions


class WarehouseConfig(dg.Config):
    charts: bool = Field(
        default=True,
        description="draw the vol, VRP and risk charts (a bulk replay of many evenings may skip the "
        "pictures of all but its last run; the data is the same)",
    )


def _draw_charts(con: duckdb.DuckDBPyConnection, lake: Lake, sessions: list[date]) -> dict[str, dg.MetadataValue]:
    """The vol, VRP and risk charts of the most-held underlyings (else the watchlist), as metadata."""
    watched = run_universe(lake, sessions)
    fallback = watched.loc[watched["source"] != "held", "symbol"].tolist()
    vol = render_vol_chart(con, lake.reports_dir, sessions[-1], fallback_symbols=fallback)
    vrp = render_vrp_chart(con, lake.reports_dir, sessions[-1], fallback_symbols=fallback)
    metadata = {**picture("vol_chart", vol.path, vol.png, vol.caption), **picture("vrp_chart", vrp.path, vrp.png, vrp.caption)}
    drawn = render_risk_chart(con, lake.reports_dir)
    if drawn is not None:
        path, png = drawn
        metadata.update(picture("risk_chart", path, png, "Beta-weighted delta and theta per underlying (all accounts)"))
    return metadata


@dg.asset(
    deps=[
        "positions", "accounts", "universe", "market_metrics", "iv_term_structure", "earnings_calendar", "candles",
        "realized_volatility", "risk_free_rate", "position_greeks", "earnings_reports", "option_quotes", "position_pnl",
    ],
    group_name="warehouse",
    kinds={"duckdb"},
    pool="duckdb",
    description="Loads the run's sessions from the lake into warehouse.duckdb in one transaction "
    "(delete + insert per session: idempotent) and refreshes the vol_dashboard and portfolio views.",
    **ASSET_COMMON,
)
def warehouse(
    context: dg.AssetExecutionContext,
    config: WarehouseConfig,
    pipeline: PipelineResource,
    warehouse_db: WarehouseResource,
) -> dg.MaterializeResult:
    sessions = run_sessions(context)
    with warehouse_db.publish(context.run_id) as con:
        report = load_sessions(con, pipeline.lake, sessions, run_id=context.run_id, tables=MARKET_AND_POSITIONS)
        dashboard = con.execute("SELECT * FROM vol_dashboard ORDER BY symbol").df()
        risk = con.execute(
            "SELECT underlying_symbol, positions, position_delta, position_gamma, position_theta, position_vega, "
            "beta_weighted_delta, share_of_account_bwd FROM portfolio_risk WHERE account_number = 'ALL' "
            "ORDER BY abs(coalesce(beta_weighted_delta, 0)) DESC"
        ).df()
        counts = {
            table: con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] for table in report.rows_by_table
        }
    # The pictures are a view of data already committed, drawn after the write lock is released
    # (a reader does not block other readers); a drawing error is reported, not fatal.
    chart_metadata: dict[str, dg.MetadataValue] = {}
    if config.charts:
        try:
            with warehouse_db.connect() as con:
                chart_metadata = _draw_charts(con, pipeline.lake, sessions)
        except Exception as exc:  # noqa: BLE001
            if is_disk_full(exc):  # a full disk is not a drawing problem: the run must not look green
                raise
            context.log.warning(f"vol chart not drawn: {exc!r}")
            chart_metadata = {"vol_chart_error": dg.MetadataValue.text(repr(exc))}
    # An s3:// data dir: the run's files (this warehouse last) are committed here, where a failure
    # fails the run; the resource's teardown would only log it.
    pushed = pipeline.commit(context.run_id, context.log)
    commit_metadata: dict[str, dg.MetadataValue | int] = {}
    if pushed is not None:
        commit_metadata = {"committed_to": dg.MetadataValue.text(f"{pushed.url}/manifest.json"),
                           "objects_uploaded": len(pushed.transferred)}
    return dg.MaterializeResult(
        metadata={
            "rows_loaded": report.total_rows,
            **{f"rows_loaded_{t}": n for t, n in report.rows_by_table.items()},
            **{f"table_rows_{t}": int(n) for t, n in counts.items()},
            "warehouse_path": path_value(pipeline.lake.warehouse_path),
            "vol_dashboard": preview(dashboard, rows=20),
            "portfolio_risk": preview(risk, rows=30),
            **chart_metadata,
            **commit_metadata,
        }
    )
