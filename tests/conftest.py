"""Shared fixtures: a real simulator on loopback and a pipeline wired to it in a tmp data dir."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, TypeVar

import dagster as dg
import pytest

from variance_pipeline.defs.assets import ALL_ASSETS
from variance_pipeline.defs.checks import ALL_CHECKS
from variance_pipeline.defs.resources import RetryConfig, YahooResource, build_resources
from variance_pipeline.settings import Settings
from variance_pipeline.simulator import SimulatorServer

R = TypeVar("R", bound=dg.ConfigurableResource)
RECORDED = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "recorded"
# A fixed clock after the close of Tuesday 2025-11-25, so runs are reproducible.
CLOCK = datetime(2025, 11, 25, 22, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="session")
def recorded_dir() -> Path:
    if not RECORDED.exists():
        pytest.fail(f"recorded fixtures not found at {RECORDED} (shared/ must sit beside the checkout)")
    return RECORDED


@pytest.fixture(scope="session")
def simulator() -> Iterator[SimulatorServer]:
    with SimulatorServer(port=0, now=CLOCK) as server:
        yield server


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
    fast_retry = RetryConfig(base_delay=0.01, max_delay=0.05, max_total_wait=1.0, timeout=5.0)
    resources["yahoo"] = YahooResource(base_url=settings.yahoo_chart_url, rate_per_second=0, retry=fast_retry)
    resources["tastytrade"] = reconfigured(resources["tastytrade"], retry=fast_retry)
    return resources


def materialize(
    settings: Settings, *, partition_key: str | None = None, partition_range: tuple[str, str] | None = None,
    instance: dg.DagsterInstance | None = None, raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    """A real Dagster run of every asset (checks included) for one session or a range."""
    tags = {}
    if partition_range:
        tags = {"dagster/asset_partition_range_start": partition_range[0], "dagster/asset_partition_range_end": partition_range[1]}
    return dg.materialize(
        [*ALL_ASSETS, *ALL_CHECKS],
        resources=fast_resources(settings),
        partition_key=partition_key,
        tags=tags,
        instance=instance,
        raise_on_error=raise_on_error,
    )
