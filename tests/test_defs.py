"""The code location loads the way users load it: dagster CLI, ``dg``, and Python."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from support import definitions_for
from variance_pipeline.definitions import environment, load_definitions
from variance_pipeline.settings import Settings

PROJECT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "VARIANCE_SOURCE": "simulator", "VARIANCE_DATA_DIR": str(tmp_path), "DAGSTER_HOME": str(tmp_path)}
    env.update(extra)
    return env


def test_every_stage_is_collected_without_a_hand_kept_list(tmp_path: Path) -> None:
    with environment({"VARIANCE_SOURCE": "simulator", "VARIANCE_DATA_DIR": str(tmp_path)}):
        defs = load_definitions()
    assert set(defs.resources) == {
        "pipeline", "tastytrade", "yahoo", "warehouse_db", "book_rules", "report_screen", "mail",
    }, "resources live in defs/ too"
    keys = {key.to_user_string() for assets in defs.assets for key in assets.keys}
    assert keys == {
        "positions", "accounts", "universe", "market_metrics", "iv_term_structure", "candles", "realized_volatility",
        "risk_free_rate", "earnings_reports", "earnings_calendar", "position_greeks", "warehouse", "balances",
        "margin_requirements",
        "trading_status", "option_quotes", "position_pnl", "account_book", "evening_report",
        "transactions", "net_liq_history", "trades", "trade_transactions", "journal_book",
    }
    checks = {key.name for check in defs.asset_checks for key in check.check_keys}
    assert {"candles_cover_universe", "warehouse_is_fresh", "hv30_reconciles_with_tastytrade", "journal_reconciles"} <= checks
    assert [s.name for s in defs.schedules] == ["eod_schedule"]


def test_definitions_resolve_for_both_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASTYTRADE_CLIENT_SECRET", "x")
    monkeypatch.setenv("TASTYTRADE_REFRESH_TOKEN", "y")
    for source in ("simulator", "live"):
        settings = Settings.from_env({"VARIANCE_SOURCE": source, "VARIANCE_DATA_DIR": str(tmp_path / source)})
        dg.Definitions.validate_loadable(definitions_for(settings))


@pytest.mark.slow
@pytest.mark.e2e
def test_dagster_definitions_validate_cli(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(BIN / "dagster"), "definitions", "validate", "-m", "variance_pipeline.definitions"],
        env=_env(tmp_path), capture_output=True, text=True, cwd=PROJECT, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.e2e
def test_dg_check_and_list_defs(tmp_path: Path) -> None:
    check = subprocess.run(
        [str(BIN / "dg"), "check", "defs"], env=_env(tmp_path), capture_output=True, text=True, cwd=PROJECT, timeout=300
    )
    assert check.returncode == 0, check.stdout + check.stderr
    listed = subprocess.run(
        [str(BIN / "dg"), "list", "defs", "--json"], env=_env(tmp_path), capture_output=True, text=True, cwd=PROJECT, timeout=300
    )
    assert listed.returncode == 0, listed.stderr
    assert '"universe"' in listed.stdout and '"eod_schedule"' in listed.stdout


@pytest.mark.slow
@pytest.mark.e2e
def test_missing_source_is_a_clear_error_when_the_location_loads(tmp_path: Path) -> None:
    env = {k: v for k, v in _env(tmp_path).items() if k != "VARIANCE_SOURCE"}
    done = subprocess.run(
        [str(BIN / "dagster"), "definitions", "validate", "-m", "variance_pipeline.definitions"],
        env=env, capture_output=True, text=True, cwd=PROJECT, timeout=300,
    )
    assert done.returncode != 0
    assert "VARIANCE_SOURCE must be 'simulator' or 'live'" in done.stdout + done.stderr


def test_settings_reach_a_loader_unchanged(tmp_path: Path) -> None:
    """A child process or a loader gets the settings as the variables ``from_env`` reads back."""
    settings = Settings.from_env({
        "VARIANCE_SOURCE": "simulator", "VARIANCE_DATA_DIR": str(tmp_path), "VARIANCE_NOW": "2025-11-25T22:00:00+00:00",
        "VARIANCE_WATCHLIST": "SPY,/ES", "VARIANCE_YAHOO_RATE": "0.5", "VARIANCE_MIN_FREE_MB": "12.5",
        "TASTYTRADE_ACCEPT_VERSION": "20251101",
    })
    assert Settings.from_env(settings.environment()) == settings
    resources = definitions_for(settings).resources
    assert resources["pipeline"].min_free_mb == 12.5 and resources["tastytrade"].accept_version == "20251101"
    assert resources["yahoo"].rate_per_second == 0.5


def test_a_bad_free_space_floor_is_a_configuration_error_naming_the_variable() -> None:
    from variance_pipeline.settings import ConfigurationError

    with pytest.raises(ConfigurationError, match="VARIANCE_MIN_FREE_MB='lots' must be a number of MB"):
        Settings.from_env({"VARIANCE_SOURCE": "simulator", "VARIANCE_MIN_FREE_MB": "lots"})
