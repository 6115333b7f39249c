"""What the assets share: the asset defaults, the raw-landing callback, landing validated frames,
and reading the run's universe.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Callable, Protocol, Sequence

import dagster as dg
import pandas as pd

from variance_pipeline.defs.metadata import landed, path_value, preview
from variance_pipeline.defs.partitions import sessions_partitions, single_run_backfill
from variance_pipeline.lake.layout import Lake
from variance_pipeline.schemas.validate import ValidationOutcome
from variance_pipeline.sources.yahoo import dated_contract_ticker

OWNERS = ["team:variance"]
ASSET_COMMON: dict[str, Any] = dict(
    partitions_def=sessions_partitions, backfill_policy=single_run_backfill, owners=OWNERS
)


class RawBody(Protocol):
    """A response body as received (Tastytrade pages, metric batches, Yahoo charts)."""

    @property
    def name(self) -> str: ...

    @property
    def body(self) -> bytes: ...


def raw_lander(lake: Lake, dataset: str, day: date) -> Callable[[RawBody], None]:
    """The one way every source's responses reach ``raw/<dataset>/date=D/``: called per response
    as it arrives, before anything parses it, so a later failure never loses what an API said."""

    def land(raw: RawBody) -> None:
        lake.write_raw(dataset, day, raw.name, raw.body)

    return land


def land_validated(
    lake: Lake, dataset: str, day: date, outcome: ValidationOutcome
) -> dict[str, Any]:
    """Write the valid rows to the lake and the rejected rows to quarantine; report both."""
    path = lake.write_partition(dataset, day, outcome.valid)
    metadata: dict[str, Any] = {
        **landed(dataset, len(outcome.valid)),
        "rows": len(outcome.valid),
        "parquet_path": path_value(path),
        "preview": preview(outcome.valid),
    }
    if not outcome.quarantined.empty:
        metadata["quarantine_path"] = path_value(lake.write_quarantine(dataset, day, outcome.quarantined))
        metadata["rows_quarantined"] = len(outcome.quarantined)
    return metadata


def run_universe(lake: Lake, sessions: Sequence[date]) -> pd.DataFrame:
    """The universe this run landed (partition of its last session), else the newest one landed.

    Every stage after ``universe`` tracks exactly these symbols; none recomputes the list.
    """
    day = sessions[-1] if lake.has_partition("universe", sessions[-1]) else lake.latest_partition("universe")
    if day is None:
        raise dg.Failure(
            "no symbol universe has been landed yet: materialize the `universe` asset (it follows "
            "`positions`) before the stages that read it"
        )
    return lake.read_partition("universe", day)


def universe_symbols(lake: Lake, sessions: Sequence[date]) -> list[str]:
    return [str(symbol) for symbol in run_universe(lake, sessions)["symbol"]]


def held_contracts(lake: Lake, sessions: Sequence[date]) -> list[str]:
    """The dated futures contracts the run's positions snapshots hold: a future's own symbol and a
    future option's ``underlying-symbol`` (``/MESM6``), where Yahoo lists the contract under its
    own ticker (``sources.yahoo.dated_contract_ticker``). Their options are priced on them, not on
    the front-month continuous the universe tracks (``/ES``)."""
    found: list[str] = []
    for day in sessions:
        if not lake.has_partition("positions", day):
            continue
        positions = lake.read_partition("positions", day)
        kind = positions["instrument_type"].astype(str)
        own = positions.loc[kind == "Future", "symbol"]
        underlying = positions.loc[kind == "Future Option", "underlying_symbol"]
        for symbol in pd.concat([own, underlying]).dropna().astype(str).str.strip():
            if dated_contract_ticker(symbol, day) is not None:
                found.append(symbol)
    return sorted(set(found))


def candle_symbols(lake: Lake, sessions: Sequence[date]) -> list[str]:
    """What the candles asset keeps current: the universe, then the held dated contracts."""
    return list(dict.fromkeys([*universe_symbols(lake, sessions), *held_contracts(lake, sessions)]))
