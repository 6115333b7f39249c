"""Tonight's book: the account snapshots (balances, margin report, trading status), the broker's
option quotes, and P&L per position.

The account snapshot is its own step: when the balances or the margin report cannot be read it
fails with the usual "until" message, and nothing else of the evening waits for it (the market
warehouse does not depend on it; only ``account_book`` does).
"""

from typing import Iterator

import dagster as dg
import pandas as pd

from variance_pipeline.defs.common import ASSET_COMMON, land_validated
from variance_pipeline.defs.metadata import column_schema, landed, nothing_landed, preview, schema_check_spec, validation_check
from variance_pipeline.defs.partitions import run_sessions
from variance_pipeline.defs.resources import BookRules, PipelineResource
from variance_pipeline.defs.snapshot_assets import SnapshotCall, SnapshotRows, snapshot_asset
from variance_pipeline.instruments.option_symbols import held_volatility_futures
from variance_pipeline.schemas.account import BALANCES, MARGIN_REQUIREMENTS, TRADING_STATUS
from variance_pipeline.schemas.book import OPTION_QUOTES, POSITION_PNL
from variance_pipeline.schemas.validate import validate_frame
from variance_pipeline.sources.http import SourceError
from variance_pipeline.sources.tastytrade_account import (
    QUOTE_GREEKS,
    balance_rows,
    margin_requirement_rows,
    option_quote_rows,
    trading_status_rows,
)
from variance_pipeline.sources.tastytrade_frames import TastytradeDataError
from variance_pipeline.transforms.position_pnl import position_pnl as compute_pnl


def _open_accounts(call: SnapshotCall) -> list[str]:
    """The open accounts the positions snapshot of this session listed (``accounts`` dataset)."""
    if not call.lake.has_partition("accounts", call.session):
        raise TastytradeDataError(
            f"no accounts landed for {call.session}: materialize `positions` (it lands the account list) first"
        )
    accounts = call.lake.read_partition("accounts", call.session)
    return [str(n) for n in accounts.loc[~accounts["is_closed"].astype(bool), "account_number"]]


def _account_snapshot(call: SnapshotCall) -> SnapshotRows:
    stamp = {"as_of_date": call.session, "fetched_at": call.fetched_at}
    rows: dict[str, list[dict]] = {"balances": [], "margin_requirements": [], "trading_status": []}
    for number in _open_accounts(call):
        rows["balances"] += balance_rows(number, call.client.balances(number, call.on_raw), **stamp)
        rows["margin_requirements"] += margin_requirement_rows(
            number, call.client.margin_requirements(number, call.on_raw), **stamp
        )
        rows["trading_status"] += trading_status_rows(number, call.client.trading_status(number, call.on_raw), **stamp)
    net_liq = sum(row["net_liquidating_value"] or 0.0 for row in rows["balances"])
    return SnapshotRows(rows, {"balances": {"accounts": len(rows["balances"]), "net_liquidating_value": round(net_liq, 2)}})


account_snapshot = snapshot_asset(
    name="account_snapshot",
    datasets=[BALANCES, MARGIN_REQUIREMENTS, TRADING_STATUS],
    fetch=_account_snapshot,
    deps=["accounts"],
    descriptions={
        "balances": "Balances of every open account (snapshot): net liquidating value, cash, buying power "
        "and its use, maintenance requirement. A failure fails this step with until when a re-run can "
        "still take it; the rest of the evening does not wait for it.",
        "margin_requirements": "The margin report per underlying (snapshot): buying power and maintenance "
        "requirement of each underlying, the price range they are computed for.",
        "trading_status": "Each open account's trading status (snapshot): options level, margin call, "
        "portfolio margin.",
    },
)


def _option_quotes(call: SnapshotCall) -> SnapshotRows:
    """The broker's quote, IV and Greeks of each option position, when the API answers for the
    account (funded accounts); a 403 or an answer without IV/Greeks is "not available", not an error.

    The VX futures the held VIX options settle to (``/VXZ5``) are asked for in the same request
    (kind ``future``) and land as ``Future`` rows: Yahoo has no ticker for a dated VX future, so
    their mark is the only price ``position_greeks`` can price those options on."""
    symbols: dict[str, list[str]] = {}
    if call.lake.has_partition("positions", call.session):
        held = call.lake.read_partition("positions", call.session)
        for kind, endpoint in (("Equity Option", "equity-option"), ("Future Option", "future-option")):
            symbols[endpoint] = sorted(set(held.loc[held["instrument_type"] == kind, "symbol"].astype(str)))
        symbols["future"] = held_volatility_futures(held)
    if not any(symbols.values()):
        return SnapshotRows({"option_quotes": []}, {"option_quotes": {"available": "no option positions"}})
    try:
        items = call.client.market_data(symbols, call.on_raw)
    except SourceError as exc:
        if exc.status not in (401, 403, 404):
            raise
        note = f"not available: GET /market-data/by-type answered {exc.status} (funded accounts only)"
        call.log.info(f"option_quotes: {note}")
        return SnapshotRows({"option_quotes": []}, {"option_quotes": {"available": note}})
    rows = option_quote_rows(items, as_of_date=call.session, fetched_at=call.fetched_at)
    futures = [row for row in rows if row["instrument_type"] == "Future"]
    options = [row for row in rows if row["instrument_type"] != "Future"]
    counts: dict[str, int | str] = {}
    if symbols.get("future"):  # a future the API did not answer for leaves its VIX options unpriced
        unanswered = sorted(set(symbols["future"]) - {row["symbol"] for row in futures})
        counts = {"futures": len(futures), "futures_unanswered": ", ".join(unanswered) or "none"}
    if not any(row.get(field) is not None for row in options for field in QUOTE_GREEKS):
        note = "not available: the answer carries no IV or Greeks"
        call.log.info(f"option_quotes: {note}" + (f" (kept the {len(futures)} future quote(s))" if futures else ""))
        return SnapshotRows({"option_quotes": futures}, {"option_quotes": {"available": note, **counts}})
    return SnapshotRows({"option_quotes": rows}, {"option_quotes": {"available": "yes", "quotes": len(options), **counts}})


option_quotes = snapshot_asset(
    name="option_quotes",
    datasets=[OPTION_QUOTES],
    fetch=_option_quotes,
    deps=["positions"],
    fatal=False,
    descriptions={
        "option_quotes": "The broker's quote, IV and Greeks of each option position (GET /market-data/by-type, "
        "at most 100 symbols a request), and the mark of the VX future each held VIX option settles to "
        "(the price position_greeks prices it on: Yahoo has no dated VX ticker). Funded accounts only: a 403 "
        "or an answer without IV/Greeks is 'not available' (one line in the run log), never an error. Stored "
        "beside the model's numbers, never instead of them (view greeks_vs_broker).",
    },
)


@dg.asset(
    deps=["positions", "position_greeks", "market_metrics"],
    group_name="transform",
    kinds={"python", "parquet"},
    description="P&L and what to manage, per position of each landed positions snapshot: open price, mark, "
    "unrealised P&L in dollars (signed quantity x multiplier), share of max profit for credit positions, "
    "days to expiration, tested short legs, earnings before expiration, early-assignment risk; legs "
    "grouped into trades (group_id).",
    metadata={"dagster/column_schema": column_schema(POSITION_PNL)},
    check_specs=[schema_check_spec(POSITION_PNL)],
    **ASSET_COMMON,
)
def position_pnl(
    context: dg.AssetExecutionContext, pipeline: PipelineResource, book_rules: BookRules
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    lake = pipeline.lake
    days = [day for day in run_sessions(context) if lake.has_partition("positions", day)]
    if not days:
        reason = "no positions snapshot landed for this run's sessions (snapshots cannot look back)"
        yield from nothing_landed(reason, [(POSITION_PNL.check_name, POSITION_PNL.name)])
        return
    frames, outcomes, metadata = [], [], {}
    for day in days:
        greeks = lake.read_partition("position_greeks", day) if lake.has_partition("position_greeks", day) else pd.DataFrame()
        metrics = lake.read_partition("market_metrics", day) if lake.has_partition("market_metrics", day) else pd.DataFrame()
        frame = compute_pnl(lake.read_partition("positions", day), greeks, metrics, day, book_rules.thresholds())
        outcome = validate_frame(POSITION_PNL, frame)
        metadata = land_validated(lake, POSITION_PNL.name, day, outcome)
        frames.append(outcome.valid)
        outcomes.append(outcome)
    book = pd.concat(frames, ignore_index=True)
    yield dg.MaterializeResult(
        metadata={
            **metadata,
            **landed(POSITION_PNL.name, len(book)),
            "unrealized_pnl": round(float(book["unrealized_pnl"].sum()), 2),
            "tested_legs": int(book["tested"].sum()),
            "preview": preview(book[["account_number", "symbol", "mark", "unrealized_pnl", "pct_of_max_profit",
                                     "days_to_expiration", "tested"]], rows=20),
        }
    )
    yield validation_check(max(outcomes, key=lambda o: len(o.quarantined)))
