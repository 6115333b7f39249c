"""What the test modules share: the clock, the recorded fixtures, settings and real Dagster runs.

Fixtures live in ``conftest.py``; plain helpers live here so that test modules import them from
one place and never from each other.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import date, datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence, TypeVar

import dagster as dg
import pandas as pd
import pytest

from variance_pipeline.definitions import environment, load_definitions
from variance_pipeline.defs.resources import RetryConfig, YahooResource, build_resources
from variance_pipeline.schemas.dataset import Dataset
from variance_pipeline.schemas.market_metrics import IV_TERM_STRUCTURE, MARKET_METRICS
from variance_pipeline.schemas.positions import POSITIONS
from variance_pipeline.settings import Settings
from variance_pipeline.simulator import SimulatorServer
from variance_pipeline.sources.http import RetryPolicy
from variance_pipeline.sources.tastytrade_frames import market_metrics_rows, positions_rows
from variance_pipeline.sources.yahoo import CHART_PATH

R = TypeVar("R", bound=dg.ConfigurableResource)
# Real recorded responses, copied byte for byte with their provenance (fixtures/recorded/SOURCES.md).
RECORDED = Path(__file__).resolve().parent / "fixtures" / "recorded"
# A fixed clock after the close of Tuesday 2025-11-25, so runs are reproducible.
CLOCK = datetime(2025, 11, 25, 22, 0, tzinfo=timezone.utc)
FAST_RETRY = RetryConfig(base_delay=0.01, max_delay=0.05, max_total_wait=1.0, timeout=5.0)
# Common ``materialize(select=...)`` lists. Each asset reads its inputs from the lake, so a
# selection names its upstream assets too (unless an earlier run landed them).
# market_metrics and iv_term_structure are one multi-asset: Dagster only runs them together.
EXTRACT = ("positions", "universe", "market_metrics", "iv_term_structure")
CANDLES = ("positions", "universe", "candles")
# Run config for a warehouse load without its pictures (many runs in a row: only the last draws).
NO_CHARTS = {"ops": {"warehouse": {"config": {"charts": False}}}}


def pipeline_settings(data_dir: Path, url: str, *, now: datetime = CLOCK, watchlist: str = "SPY,QQQ,/ES") -> Settings:
    return Settings(
        source="simulator",
        data_dir=data_dir,
        tastytrade_api_url=url,
        yahoo_chart_url=url,
        watchlist_spec=watchlist,
        now_override=now,
    )


def reconfigured(resource: R, **update: object) -> R:
    """The resource rebuilt with ``update``: pydantic's ``model_copy`` would change attributes but
    not the configuration Dagster resolved at construction, so a run would keep the old values.
    ``EnvVar`` secrets stay references."""
    values = {name: getattr(resource, name) for name in resource.__pydantic_fields_set__}
    return type(resource)(**{**values, **update})


def fast_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """The production resources for ``settings`` with the polite Yahoo spacing and backoff off."""
    resources = build_resources(settings)
    resources["yahoo"] = YahooResource(base_url=settings.yahoo_chart_url, rate_per_second=0, retry=FAST_RETRY)
    resources["tastytrade"] = reconfigured(resources["tastytrade"], retry=FAST_RETRY)
    return resources


def definitions_for(settings: Settings) -> dg.Definitions:
    """The code location as Dagster loads it (``defs/``, resources included) for ``settings``."""
    with environment(settings.environment()):
        return load_definitions()


@lru_cache(maxsize=1)
def _definitions() -> dg.Definitions:
    """The assets and checks (the same for every environment; resources come per test)."""
    return definitions_for(pipeline_settings(Path("/nonexistent/variance-tests"), "http://127.0.0.1:9"))


def all_assets_and_checks() -> list:
    """Every asset and asset check of the code location, as ``dg`` autoloads them."""
    defs = _definitions()
    return [*defs.assets, *(defs.asset_checks or [])]


def materialize(
    settings: Settings,
    *,
    partition_key: str | None = None,
    partition_range: tuple[str, str] | None = None,
    instance: dg.DagsterInstance | None = None,
    raise_on_error: bool = True,
    select: Sequence[str] | None = None,
    resources: dict[str, dg.ConfigurableResource] | None = None,
    run_config: dict | None = None,
) -> dg.ExecuteInProcessResult:
    """A real Dagster run for one session or a range, checks included.

    ``select`` names the assets a test needs (their checks run too); default: every asset.
    """
    tags = {}
    if partition_range:
        tags = {"dagster/asset_partition_range_start": partition_range[0], "dagster/asset_partition_range_end": partition_range[1]}
    selection = None
    if select is not None:
        selection = dg.AssetSelection.assets(*select) | dg.AssetSelection.checks_for_assets(*select)
    return dg.materialize(
        all_assets_and_checks(),
        resources=resources or fast_resources(settings),
        partition_key=partition_key,
        tags=tags,
        instance=instance,
        raise_on_error=raise_on_error,
        selection=selection,
        run_config=run_config,
    )


def recorded_bytes(relative: str) -> bytes:
    """A recorded real response from ``tests/fixtures/recorded/`` (e.g. ``tastytrade/positions.json``)."""
    path = RECORDED / relative
    if not path.exists():
        pytest.fail(f"recorded fixture {path} not found")
    return path.read_bytes()


def recorded_items(relative: str) -> list:
    """``data.items`` of a recorded Tastytrade response."""
    return json.loads(recorded_bytes(relative))["data"]["items"]


def positions_frame(items: Sequence[dict], **stamp: object) -> pd.DataFrame:
    """The typed ``positions`` frame of position items (the rows builder + the declaration)."""
    return POSITIONS.frame(positions_rows(items, **stamp))


def market_metrics_frames(items: Sequence[dict], **stamp: object) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The typed ``market_metrics`` and ``iv_term_structure`` frames of metric items."""
    metrics, terms = market_metrics_rows(items, **stamp)
    return MARKET_METRICS.frame(metrics), IV_TERM_STRUCTURE.frame(terms)


def declared_frame(dataset: Dataset, data: pd.DataFrame | dict) -> pd.DataFrame:
    """Test data that names only the columns a test is about: the dataset's other columns are
    null, and the frame has the declared column order and dtypes (as a builder's would)."""
    frame = pd.DataFrame(data)
    for name in dataset.missing_columns(frame.columns):
        frame[name] = None
    return dataset.conform(frame)


# --- Yahoo charts replayed by the simulator (test_yahoo, test_candle_cache) --------------------

CHART_RETRY = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.01, max_total_wait=1.0, timeout=5.0)
FAR_FUTURE = datetime(2030, 1, 1, tzinfo=timezone.utc)  # every recorded bar is final by then


def recorded_chart(name: str) -> dict[str, Any]:
    """A fresh, mutable copy of a recorded chart body (``tests/fixtures/recorded/yahoo/<name>``)."""
    return json.loads(recorded_bytes(f"yahoo/{name}"))


def chart_result(payload: dict[str, Any]) -> dict[str, Any]:
    return payload["chart"]["result"][0]


def ny_midnight(day: date) -> int:
    """The epoch second a chart window starts at (``period1``): midnight in New York."""
    return int(pd.Timestamp(day).tz_localize("America/New_York").timestamp())


@contextmanager
def chart_replay(folder: Path, charts: Mapping[str, str]) -> Iterator[SimulatorServer]:
    """The simulator replaying recorded charts over loopback: ``charts`` maps each Yahoo ticker
    it knows to a recorded file, copied into ``folder`` (any other ticker is Yahoo's 404). A test
    alters what a ticker serves with ``sim.replay_chart`` and scripts faults with ``sim.faults``."""
    (folder / "yahoo").mkdir(parents=True)
    for ticker, name in charts.items():
        (folder / "yahoo" / f"chart_{ticker}.json").write_bytes(recorded_bytes(f"yahoo/{name}"))
    with SimulatorServer(port=0, replay_dir=folder) as sim:
        yield sim


def chart_requests(sim: SimulatorServer, ticker: str | None = None) -> list[dict[str, Any]]:
    """The chart requests the simulator served (of ``ticker`` only, when given), in order."""
    return [
        entry for entry in sim.requests.entries()
        if entry["endpoint"] == "chart" and ticker in (None, entry["path"].removeprefix(CHART_PATH))
    ]
