"""The ``earnings_reports`` asset: past earnings dates, fetched about once per symbol per quarter.

History does not change, so a symbol is asked again only after the report the last fetch expected
(the snapshot's ``earnings_date``) has passed, or after ``REFETCH_DAYS`` as a safety net; the
state of each symbol lives in ``cache/earnings/<symbol>.json``. Only symbols whose metrics carry
an earnings date are asked (ETFs, futures and indices have none).
"""


import json
from datetime import date, timedelta
from typing import Iterator

import dagster as dg
import pandas as pd

from variance_pipeline.calendar import last_closed_session
from variance_pipeline.candles.store import file_stem
from variance_pipeline.defs.common import ASSET_COMMON, land_validated, raw_lander, universe_symbols
from variance_pipeline.defs.metadata import nothing_landed, validation_check
from variance_pipeline.defs.partitions import run_sessions
from variance_pipeline.defs.resources import PipelineResource, TastytradeResource
from variance_pipeline.lake import Lake, write_json_atomic
from variance_pipeline.sources.http import RequestStats, SourceError
from variance_pipeline.sources.tastytrade_frames import TastytradeDataError
from variance_pipeline.sources.tastytrade_reference import earnings_report_rows
from variance_pipeline.schemas.earnings import EARNINGS_REPORTS
from variance_pipeline.schemas.validate import validate_frame

HISTORY_DAYS = 3 * 366  # the first fetch of a symbol reaches this far back
REFETCH_DAYS = 100  # ask again at least this often, even if no report was expected
OVERLAP_DAYS = 120  # a later fetch starts this long before the previous one (late corrections)


def _state_path(lake: Lake, symbol: str):
    return lake.root / "cache" / "earnings" / f"{file_stem(symbol)}.json"


def _read_state(lake: Lake, symbol: str) -> dict:
    try:
        doc = json.loads(_state_path(lake, symbol).read_text())
        return doc if isinstance(doc, dict) else {}
    except (FileNotFoundError, ValueError):
        return {}


def due(state: dict, today: date) -> bool:
    """Whether a symbol's history must be asked again today."""
    if not state.get("fetched_on"):
        return True
    fetched = date.fromisoformat(state["fetched_on"])
    expected = state.get("next_expected")
    if expected and date.fromisoformat(expected) < today and fetched <= date.fromisoformat(expected):
        return True
    return (today - fetched).days >= REFETCH_DAYS


@dg.asset(
    deps=["universe", "market_metrics"],
    group_name="extract",
    kinds={"python", "parquet"},
    description="Past earnings report dates per underlying (Tastytrade historic corporate events), "
    "incremental: a symbol is asked once, then again only after its expected report date passed "
    "(about once a quarter). Feeds earnings_moves and next_earnings in the warehouse.",
    check_specs=[dg.AssetCheckSpec("earnings_reports_schema", asset="earnings_reports")],
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
    asked = [symbol for symbol in sorted(expected) if due(_read_state(lake, symbol), today)]
    if not asked:
        reason = f"no symbol is due (histories of {len(expected)} symbols are current)"
        yield from nothing_landed(
            reason, [("earnings_reports_schema", "earnings_reports")], symbols_with_earnings=len(expected)
        )
        return
    stats = RequestStats()
    rows: list[dict] = []
    now = pipeline.clock()
    land = raw_lander(lake, "earnings_reports", session)
    try:
        with tastytrade.client(stats) as client:
            for symbol in asked:
                state = _read_state(lake, symbol)
                start = (
                    date.fromisoformat(state["fetched_on"]) - timedelta(days=OVERLAP_DAYS)
                    if state.get("fetched_on")
                    else today - timedelta(days=HISTORY_DAYS)
                )
                items = client.earnings_reports(symbol, start, on_raw=land)
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
        next_expected = expected[symbol]
        write_json_atomic(
            _state_path(lake, symbol),
            {"symbol": symbol, "fetched_on": today.isoformat(), "next_expected": str(next_expected)},
        )
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
    yield validation_check("earnings_reports_schema", outcome, "earnings_reports")
