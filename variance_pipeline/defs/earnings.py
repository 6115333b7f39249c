"""The ``earnings_reports`` asset: past earnings dates, fetched about once per symbol per quarter
(``lake/earnings_state.py`` says when a symbol is due). Only symbols whose metrics carry an
earnings date are asked (ETFs, futures and indices have none).
"""


from typing import Iterator

import dagster as dg
import pandas as pd

from variance_pipeline.calendar import last_closed_session
from variance_pipeline.defs.common import ASSET_COMMON, land_validated, raw_lander, universe_symbols
from variance_pipeline.defs.metadata import column_schema, schema_check_spec, nothing_landed, validation_check
from variance_pipeline.defs.partitions import run_sessions
from variance_pipeline.defs.resources import PipelineResource, TastytradeResource
from variance_pipeline.lake.earnings_state import EarningsState, due, fetch_start
from variance_pipeline.sources.http import RequestStats, SourceError
from variance_pipeline.sources.tastytrade_frames import TastytradeDataError
from variance_pipeline.sources.tastytrade_reference import earnings_report_rows
from variance_pipeline.schemas.earnings import EARNINGS_REPORTS
from variance_pipeline.schemas.validate import validate_frame

@dg.asset(
    deps=["universe", "market_metrics"],
    metadata={"dagster/column_schema": column_schema(EARNINGS_REPORTS)},
    group_name="extract",
    kinds={"python", "parquet"},
    description="Past earnings report dates per underlying (Tastytrade historic corporate events), "
    "incremental: a symbol is asked once, then again only after its expected report date passed "
    "(about once a quarter). Feeds earnings_moves and next_earnings in the warehouse.",
    check_specs=[schema_check_spec(EARNINGS_REPORTS)],
    **ASSET_COMMON,
)
def earnings_reports(
    context: dg.AssetExecutionContext, pipeline: PipelineResource, tastytrade: TastytradeResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    lake = pipeline.lake
    session = run_sessions(context)[-1]
    today = last_closed_session(pipeline.clock())
    latest = lake.latest_partition("market_metrics")
    metrics = lake.read_partition("market_metrics", latest) if latest else pd.DataFrame(columns=["symbol", "earnings_date"])
    wanted = set(universe_symbols(lake, run_sessions(context)))
    expected = {
        str(row.symbol): row.earnings_date
        for row in metrics.itertuples(index=False)
        if str(row.symbol) in wanted and pd.notna(row.earnings_date)
    }
    state = EarningsState(lake.earnings_state_dir)
    asked = [symbol for symbol in sorted(expected) if due(state.read(symbol), today)]
    if not asked:
        reason = f"no symbol is due (histories of {len(expected)} symbols are current)"
        yield from nothing_landed(
            reason, [(EARNINGS_REPORTS.check_name, EARNINGS_REPORTS.name)], symbols_with_earnings=len(expected)
        )
        return
    stats = RequestStats()
    rows: list[dict] = []
    now = pipeline.clock()
    land = raw_lander(lake, "earnings_reports", session)
    try:
        with tastytrade.client(stats) as client:
            for symbol in asked:
                items = client.earnings_reports(symbol, fetch_start(state.read(symbol), today), on_raw=land)
                rows.extend(earnings_report_rows(symbol, items, fetched_at=now))
    except (SourceError, TastytradeDataError) as exc:
        raise dg.Failure(
            f"earnings_reports: {exc} [{stats.requests} request(s)]; symbols already fetched keep their "
            "history, the rest are asked again on the next run"
        ) from exc
    outcome = validate_frame(EARNINGS_REPORTS, EARNINGS_REPORTS.frame(rows))
    metadata = land_validated(lake, "earnings_reports", session, outcome)
    # The state is written after the partition, so a crash re-asks rather than forgets.
    for symbol in asked:
        state.write(symbol, today, expected[symbol])
    yield dg.MaterializeResult(
        metadata={
            **metadata,
            "landed": True,
            "symbols_asked": len(asked),
            "symbols_current": len(expected) - len(asked),
            "reports": len(outcome.valid),
            **stats.as_metadata(),
        }
    )
    yield validation_check(outcome)
