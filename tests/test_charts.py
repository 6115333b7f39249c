"""The IV vs HV chart: drawn from a real DuckDB warehouse and attached to the warehouse asset."""

from __future__ import annotations

import base64
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from support import materialize, pipeline_settings
from variance_pipeline.calendar import sessions_back
from variance_pipeline.defs.charts import chart_symbols, render_vol_chart
from variance_pipeline.lake import Lake
from variance_pipeline.warehouse.connection import warehouse_connection
from variance_pipeline.warehouse.load import load_sessions

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LAST = date(2025, 11, 24)
FETCHED = datetime(2025, 11, 24, 22, tzinfo=timezone.utc)
SYMBOLS = ["SPY", "QQQ", "/ES"]


def position(symbol: str, root: str, quantity: float, day: date) -> dict:
    return {
        "as_of_date": day, "account_number": "5WX00001", "symbol": symbol, "instrument_type": "Equity Option",
        "underlying_symbol": root, "root_symbol": root, "quantity": quantity,
        "quantity_direction": "Short" if quantity < 0 else "Long", "multiplier": 100,
        "expires_at": datetime(2025, 12, 19, 21, tzinfo=timezone.utc), "fetched_at": FETCHED,
    }


def fill_year(lake: Lake, *, with_positions: bool = True) -> list[date]:
    """About a year of realised volatility for three symbols, IV snapshots on two days, positions."""
    days = sessions_back(LAST, 260)
    rng = np.random.default_rng(7)
    for i, day in enumerate(days):
        hv20 = 0.15 + 0.05 * np.sin(i / 20) + rng.normal(0, 0.005, len(SYMBOLS))
        rv = pd.DataFrame(
            {"symbol": SYMBOLS, "session_date": [day] * 3, "close": [600.0, 500.0, 6000.0], "hv20": hv20,
             "hv252": [0.18, 0.2, None] if i > 250 else [None] * 3}
        )
        lake.write_partition("realized_volatility", day, rv)
    for day, iv in ((days[-2], 0.19), (days[-1], 0.21)):
        lake.write_partition(
            "market_metrics", day,
            pd.DataFrame({"as_of_date": [day] * 3, "symbol": SYMBOLS, "implied_volatility": [iv, iv + 0.02, iv - 0.01],
                          "iv_rank": [0.3] * 3, "earnings_date": [None] * 3, "fetched_at": [FETCHED] * 3}),
        )
    if with_positions:
        rows = [
            position("QQQ   251219P00500000", "QQQ", -1, LAST),
            position("QQQ   251219C00650000", "QQQ", -1, LAST),
            position("./ESZ5 EW3Z5 251219P6000", "/ES", -1, LAST),
        ]
        lake.write_partition("positions", LAST, pd.DataFrame(rows))
    return days


def test_most_held_first_else_watchlist(tmp_path: Path) -> None:
    held = Lake(tmp_path / "held")
    days = fill_year(held)
    with warehouse_connection(held.warehouse_path) as con:
        load_sessions(con, held, days)
        assert chart_symbols(con, top_n=5) == (["QQQ", "/ES"], "most held")
        assert chart_symbols(con, top_n=1)[0] == ["QQQ"]

    empty = Lake(tmp_path / "watch")
    days = fill_year(empty, with_positions=False)
    with warehouse_connection(empty.warehouse_path) as con:
        load_sessions(con, empty, days)
        symbols, basis = chart_symbols(con, top_n=5, fallback=["QQQ", "IWM", "SPY"])
        assert (symbols, basis.startswith("watchlist")) == (["QQQ", "SPY"], True)
        assert chart_symbols(con, top_n=5)[0] == sorted(SYMBOLS)


def test_chart_png_from_a_small_warehouse(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    days = fill_year(lake)
    with warehouse_connection(lake.warehouse_path) as con:
        load_sessions(con, lake, days)
        chart = render_vol_chart(con, tmp_path / "reports", LAST)
    assert chart.path == tmp_path / "reports" / f"vol_chart_{LAST}.png"
    data = chart.path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1024
    assert data == chart.png
    assert not [p for p in chart.path.parent.iterdir() if p.name.endswith(".tmp")]
    metadata = chart.metadata()
    assert metadata["vol_chart_path"].value == str(chart.path)
    markdown = metadata["vol_chart"].value
    assert "![chart](data:image/png;base64," in markdown
    encoded = markdown.split("base64,", 1)[1].rstrip(")")
    assert base64.b64decode(encoded) == data


def test_empty_warehouse_still_draws(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    with warehouse_connection(lake.warehouse_path) as con:
        load_sessions(con, lake, [LAST])
        chart = render_vol_chart(con, tmp_path / "reports", LAST)
    assert chart.symbols == [] and chart.path.read_bytes().startswith(PNG_MAGIC)


def test_warehouse_asset_attaches_the_chart(tmp_path: Path, simulator) -> None:
    result = materialize(pipeline_settings(tmp_path, simulator.url), partition_key="2025-11-25")
    assert result.success
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.path == ["warehouse"]]
    metadata = event.materialization.metadata
    assert "vol_chart_error" not in metadata
    path = Path(metadata["vol_chart_path"].value)
    assert path == tmp_path / "reports" / "vol_chart_2025-11-25.png"
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1024
    assert "](data:image/png;base64," in metadata["vol_chart"].value
