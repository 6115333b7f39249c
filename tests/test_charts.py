"""The IV vs HV chart: drawn from a real DuckDB warehouse and attached to the warehouse asset."""

from __future__ import annotations

import pytest

import base64
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from support import declared_frame, materialize, pipeline_settings
from variance_pipeline.schemas.market_metrics import MARKET_METRICS
from variance_pipeline.schemas.positions import POSITIONS
from variance_pipeline.schemas.realized_volatility import REALIZED_VOLATILITY
from variance_pipeline.calendar import sessions_back
import variance_pipeline.reports.charts as charts
from variance_pipeline.reports.charts import chart_symbols, render_vol_chart, render_vrp_chart
from variance_pipeline.defs.metadata import picture
from variance_pipeline.lake.layout import Lake
from variance_pipeline.warehouse.connection import warehouse_connection
from variance_pipeline.warehouse.load import load_sessions

pytestmark = pytest.mark.slow

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
             "hv252": [0.18, 0.2, None] if i > 250 else [None] * 3, "returns_available": 252}
        )
        lake.write_partition("realized_volatility", day, declared_frame(REALIZED_VOLATILITY, rv))
    for day, iv in ((days[-2], 0.19), (days[-1], 0.21)):
        lake.write_partition(
            "market_metrics", day,
            declared_frame(MARKET_METRICS, {"as_of_date": [day] * 3, "symbol": SYMBOLS, "implied_volatility": [iv, iv + 0.02, iv - 0.01],
                          "iv_rank": [0.3] * 3, "earnings_date": [None] * 3, "fetched_at": [FETCHED] * 3}),
        )
    if with_positions:
        rows = [
            position("QQQ   251219P00500000", "QQQ", -1, LAST),
            position("QQQ   251219C00650000", "QQQ", -1, LAST),
            position("./ESZ5 EW3Z5 251219P6000", "/ES", -1, LAST),
        ]
        lake.write_partition("positions", LAST, declared_frame(POSITIONS, rows))
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
    metadata = picture("vol_chart", chart.path, chart.png, chart.caption)
    assert metadata["vol_chart_path"].value == str(chart.path)
    markdown = metadata["vol_chart"].value
    assert "![vol_chart](data:image/png;base64," in markdown
    encoded = markdown.split("base64,", 1)[1].rstrip(")")
    assert base64.b64decode(encoded) == data


def test_empty_warehouse_still_draws(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    with warehouse_connection(lake.warehouse_path) as con:
        load_sessions(con, lake, [LAST])
        chart = render_vol_chart(con, tmp_path / "reports", LAST)
    assert chart.symbols == [] and chart.path.read_bytes().startswith(PNG_MAGIC)


def test_warehouse_asset_attaches_the_chart(tmp_path: Path, simulator) -> None:
    # The whole graph: the warehouse draws the vol, VRP and risk charts from what every upstream
    # asset landed, and "vol_chart_error" would report a failure in any of them.
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
    vrp_path = Path(metadata["vrp_chart_path"].value)
    assert vrp_path == tmp_path / "reports" / "vrp_chart_2025-11-25.png"
    assert vrp_path.read_bytes().startswith(PNG_MAGIC)
    assert "](data:image/png;base64," in metadata["vrp_chart"].value


class _Recorded:
    """Keeps every Figure the chart module builds, so a test can read the lines it drew."""

    def __init__(self, monkeypatch) -> None:
        self.figures = []
        real = charts.Figure

        def build(*args, **kwargs):
            figure = real(*args, **kwargs)
            self.figures.append(figure)
            return figure

        monkeypatch.setattr(charts, "Figure", build)

    def lines(self, label: str, title: str) -> list:
        [figure] = self.figures
        [ax] = [a for a in figure.axes if a.get_title().startswith(title)]
        return [line for line in ax.get_lines() if line.get_label() == label]


def write_iv_history(lake: Lake, days: list[date]) -> None:
    """An IV snapshot on each of ``days`` (a rising line), replacing fill_year's two."""
    for i, day in enumerate(days):
        lake.write_partition(
            "market_metrics", day,
            declared_frame(MARKET_METRICS, {"as_of_date": [day] * 3, "symbol": SYMBOLS, "implied_volatility": [0.15 + i * 0.002] * 3,
                          "iv_rank": [0.3] * 3, "earnings_date": [None] * 3, "fetched_at": [FETCHED] * 3}),
        )


def test_vol_chart_draws_the_iv_history_as_a_line(tmp_path: Path, monkeypatch) -> None:
    lake = Lake(tmp_path)
    days = fill_year(lake)
    write_iv_history(lake, days[-30:])
    with warehouse_connection(lake.warehouse_path) as con:
        load_sessions(con, lake, days)
        recorded = _Recorded(monkeypatch)
        render_vol_chart(con, tmp_path / "reports", LAST)
    [iv] = recorded.lines("IV", "QQQ")
    assert len(iv.get_xdata()) == 30 and iv.get_linestyle() == "-" and iv.get_marker() in (None, "None", "")
    assert np.allclose(iv.get_ydata(), [(0.15 + i * 0.002) * 100 for i in range(30)])


def test_vol_chart_shows_a_few_snapshots_as_dots(tmp_path: Path, monkeypatch) -> None:
    lake = Lake(tmp_path)
    days = fill_year(lake)  # two IV snapshots
    with warehouse_connection(lake.warehouse_path) as con:
        load_sessions(con, lake, days)
        recorded = _Recorded(monkeypatch)
        render_vol_chart(con, tmp_path / "reports", LAST)
    [iv] = recorded.lines("IV", "QQQ")
    assert len(iv.get_xdata()) == 2 and iv.get_marker() == "o"


def test_vrp_chart_draws_iv30_against_forward_realised(tmp_path: Path, monkeypatch) -> None:
    lake = Lake(tmp_path)
    days = fill_year(lake)
    with warehouse_connection(lake.warehouse_path) as con:
        load_sessions(con, lake, days)
        # vrp rows as the history refresh writes them: the last 21 evenings still pending.
        evenings = days[-40:]
        for i, day in enumerate(evenings):
            done = i < len(evenings) - 21
            hv = 0.14 + 0.001 * i if done else None
            con.execute(
                "INSERT OR REPLACE INTO vrp VALUES (?, ?, ?, 'constant_maturity', ?, ?, ?, NULL)",
                ["QQQ", day, 0.2, hv, (0.2 - hv) if done else None, 21 if done else len(evenings) - 1 - i],
            )
        recorded = _Recorded(monkeypatch)
        chart = render_vrp_chart(con, tmp_path / "reports", LAST)
    assert chart.path == tmp_path / "reports" / f"vrp_chart_{LAST}.png"
    assert chart.path.read_bytes() == chart.png and chart.png.startswith(PNG_MAGIC)
    assert chart.symbols == ["QQQ", "/ES"] and chart.complete_rows == 19
    [iv30] = recorded.lines("iv30", "QQQ")
    [hv] = recorded.lines("HV next 21", "QQQ")
    assert len(iv30.get_xdata()) == 40 and np.allclose(iv30.get_ydata(), 20.0)
    realised = np.asarray(hv.get_ydata(), dtype=float)
    assert np.allclose(realised[:19], [(0.14 + 0.001 * i) * 100 for i in range(19)]) and np.isnan(realised[19:]).all()
    metadata = picture("vrp_chart", chart.path, chart.png, chart.caption)
    assert metadata["vrp_chart_path"].value == str(chart.path)
    encoded = metadata["vrp_chart"].value.split("base64,", 1)[1].rstrip(")")
    assert base64.b64decode(encoded) == chart.png


def test_vrp_chart_on_an_empty_warehouse(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    with warehouse_connection(lake.warehouse_path) as con:
        load_sessions(con, lake, [LAST])
        chart = render_vrp_chart(con, tmp_path / "reports", LAST)
    assert chart.symbols == [] and chart.complete_rows == 0 and chart.path.read_bytes().startswith(PNG_MAGIC)
