"""The warehouse asset's picture: implied vs realised volatility of the most-held underlyings.

One small panel per underlying over the last year: HV20 and HV252 from ``realized_volatility``
(one value per session) and the implied volatility from ``market_metrics`` (a snapshot series:
one point per evening it was fetched on; dots while there are few snapshots, a line once the
history has grown). ``render_vrp_chart`` draws the second picture: the variance risk premium
history from the ``vrp`` table (iv30 against the realised volatility of the next 21 sessions). Rendered with matplotlib's Agg
canvas (no display, no pyplot global state), saved atomically under ``<data_dir>/reports/`` and
shown in the Dagster UI as a path plus an inline markdown image.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Iterable, Sequence

import duckdb
import pandas as pd
import matplotlib.dates as mdates
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from variance_pipeline.lake.atomic import write_bytes_atomic

TOP_N = 6
WINDOW_DAYS = 365
DPI = 80
PANEL_INCHES = (4.0, 2.4)
COLUMNS = 3
IV_DOTS_BELOW = 10  # fewer IV snapshots than this: each drawn as a dot on the line


@dataclass(frozen=True)
class VolChart:
    path: Path
    png: bytes
    symbols: list[str]
    basis: str  # "positions" (most held) or "watchlist" (no positions yet)
    session: date | None

    @property
    def caption(self) -> str:
        return f"IV vs HV20/HV252, last year, {self.basis}: {', '.join(self.symbols) or 'no data yet'}"


def chart_symbols(
    con: duckdb.DuckDBPyConnection, top_n: int = TOP_N, fallback: Iterable[str] = ()
) -> tuple[list[str], str]:
    """The ``top_n`` most-held underlyings (positions rows in the latest snapshot), else the watchlist.

    The fallback keeps the watchlist's order, limited to symbols the warehouse has data for; with
    no usable watchlist it is the ``vol_dashboard`` symbols in alphabetical order.
    """
    held = con.execute(
        """
        SELECT coalesce(root_symbol, underlying_symbol, symbol) AS underlying, count(*) AS n
        FROM positions
        WHERE as_of_date = (SELECT max(as_of_date) FROM positions)
        GROUP BY underlying
        ORDER BY n DESC, underlying
        LIMIT ?
        """,
        [top_n],
    ).fetchall()
    if held:
        return [row[0] for row in held], "most held"
    known = [row[0] for row in con.execute("SELECT symbol FROM vol_dashboard WHERE symbol IS NOT NULL ORDER BY symbol").fetchall()]
    wanted = [symbol for symbol in dict.fromkeys(fallback) if symbol in set(known)]
    return (wanted or known)[:top_n], "watchlist (no positions)"


def _series(con: duckdb.DuckDBPyConnection, symbols: Sequence[str], start: date, end: date) -> tuple[pd.DataFrame, pd.DataFrame]:
    hv = con.execute(
        """
        SELECT symbol, session_date, hv20, hv252 FROM realized_volatility
        WHERE symbol IN (SELECT unnest(?)) AND session_date BETWEEN ? AND ?
        ORDER BY symbol, session_date
        """,
        [list(symbols), start, end],
    ).df()
    iv = con.execute(
        """
        SELECT symbol, as_of_date AS session_date, implied_volatility FROM market_metrics
        WHERE symbol IN (SELECT unnest(?)) AND as_of_date BETWEEN ? AND ? AND implied_volatility IS NOT NULL
        ORDER BY symbol, as_of_date
        """,
        [list(symbols), start, end],
    ).df()
    return hv, iv


def _latest_session(con: duckdb.DuckDBPyConnection) -> date | None:
    row = con.execute(
        "SELECT greatest(max(session_date), (SELECT max(as_of_date) FROM market_metrics)) FROM realized_volatility"
    ).fetchone()
    return row[0] if row else None


def _panel_grid(count: int, dpi: int, empty_text: str) -> tuple[Figure, list]:
    """A figure with one panel per symbol (``COLUMNS`` wide), or one saying ``empty_text``."""
    panels = max(count, 1)
    columns = min(COLUMNS, panels)
    rows = math.ceil(panels / columns)
    figure = Figure(figsize=(PANEL_INCHES[0] * columns, PANEL_INCHES[1] * rows + 0.5), dpi=dpi)
    FigureCanvasAgg(figure)
    # Fixed margins (in inches, so any grid size keeps room for titles and tick labels): a
    # constrained layout measured every label and doubled the drawing time of each chart.
    width, height = figure.get_size_inches()
    figure.subplots_adjust(
        left=0.45 / width, right=1 - 0.15 / width, bottom=0.4 / height, top=1 - 0.7 / height,
        wspace=0.25, hspace=0.5,
    )
    axes = list(figure.subplots(rows, columns, squeeze=False).ravel())
    for ax in axes[count:]:
        ax.set_visible(False)
    if not count:
        axes[0].set_visible(True)
        axes[0].axis("off")
        axes[0].text(0.5, 0.5, empty_text, ha="center", va="center")
    return figure, axes


def _date_panel(ax, window: tuple[date, date], empty_text: str | None) -> None:  # noqa: ANN001 - an Axes
    """The look every time-series panel shares: percent axis, grid, the window's dates."""
    ax.tick_params(labelsize=7)
    ax.set_ylabel("%", fontsize=7)
    ax.grid(alpha=0.3)
    if empty_text:
        ax.text(0.5, 0.5, empty_text, ha="center", va="center", transform=ax.transAxes, fontsize=8)
    ax.set_xlim(pd.Timestamp(window[0]), pd.Timestamp(window[1]) + pd.Timedelta(days=3))
    locator = mdates.AutoDateLocator(maxticks=6)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def _finish(figure: Figure, legend_axes: Sequence, title: str, dpi: int) -> bytes:
    """Title, legend on the first panel (if any) and the PNG bytes."""
    if len(legend_axes):
        legend_axes[0].legend(fontsize=6, loc="upper left")
    figure.suptitle(title, fontsize=10)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def render_png(
    hv: pd.DataFrame, iv: pd.DataFrame, symbols: Sequence[str], title: str, window: tuple[date, date], dpi: int = DPI
) -> bytes:
    """One panel per symbol over the same ``window``; volatilities (fractions) drawn as percentages."""
    figure, axes = _panel_grid(len(symbols), dpi, "no volatility data in the warehouse yet")
    for ax, symbol in zip(axes, symbols):
        h = hv[hv["symbol"] == symbol]
        i = iv[iv["symbol"] == symbol]
        x = pd.to_datetime(h["session_date"])
        dots = "o" if len(h) < 30 else None  # a few sessions loaded: show the points, not just lines
        ax.plot(x, h["hv20"] * 100, lw=1.0, color="tab:blue", marker=dots, ms=3, label="HV20")
        ax.plot(x, h["hv252"] * 100, lw=1.0, color="tab:green", marker=dots, ms=3, label="HV252")
        # The IV history: a line over the snapshot evenings; dots only while there are a few.
        ax.plot(
            pd.to_datetime(i["session_date"]), i["implied_volatility"] * 100,
            color="tab:red", marker="o" if len(i) < IV_DOTS_BELOW else None, ms=4, lw=1.2, label="IV",
        )
        ax.set_title(symbol, fontsize=9)
        _date_panel(ax, window, "no data" if h.empty and i.empty else None)
    return _finish(figure, axes if symbols else [], title, dpi)


def render_vol_chart(
    con: duckdb.DuckDBPyConnection,
    reports_dir: Path,
    session: date | None = None,
    *,
    top_n: int = TOP_N,
    fallback_symbols: Iterable[str] = (),
    window_days: int = WINDOW_DAYS,
    dpi: int = DPI,
) -> VolChart:
    """Render the chart from the warehouse and save it as ``reports_dir/vol_chart_<session>.png``.

    ``session`` ends the one-year window (default: the newest date in the warehouse).
    """
    end = session or _latest_session(con) or date.today()
    start = end - timedelta(days=window_days)
    symbols, basis = chart_symbols(con, top_n, fallback_symbols)
    hv, iv = _series(con, symbols, start, end)
    png = render_png(hv, iv, symbols, f"IV vs realised volatility, {start} .. {end} ({basis})", (start, end), dpi=dpi)
    path = write_bytes_atomic(Path(reports_dir) / f"vol_chart_{end.isoformat()}.png", png)
    return VolChart(path=path, png=png, symbols=symbols, basis=basis, session=end)


@dataclass(frozen=True)
class VrpChart:
    path: Path
    png: bytes
    symbols: list[str]
    basis: str
    session: date | None
    complete_rows: int  # vrp rows of the drawn symbols with a complete 21-session window

    @property
    def caption(self) -> str:
        return (
            f"VRP history: iv30 vs the next 21 sessions' realised volatility, {self.basis}: "
            f"{', '.join(self.symbols) or 'no data yet'} ({self.complete_rows} complete windows)"
        )


def _vrp_series(con: duckdb.DuckDBPyConnection, symbols: Sequence[str], start: date, end: date) -> pd.DataFrame:
    return con.execute(
        """
        SELECT symbol, as_of_date, iv30, hv_forward_21, vrp FROM vrp
        WHERE symbol IN (SELECT unnest(?)) AND as_of_date BETWEEN ? AND ?
        ORDER BY symbol, as_of_date
        """,
        [list(symbols), start, end],
    ).df()


def render_vrp_png(
    vrp: pd.DataFrame, symbols: Sequence[str], title: str, window: tuple[date, date], dpi: int = DPI
) -> bytes:
    """One panel per symbol: iv30 (every snapshot) and hv_forward_21 (once its window is complete)
    as lines, the premium iv30 - hv_forward_21 shaded between them (green: sellers won)."""
    figure, axes = _panel_grid(len(symbols), dpi, "no VRP history in the warehouse yet")
    for ax, symbol in zip(axes, symbols):
        v = vrp[vrp["symbol"] == symbol]
        x = pd.to_datetime(v["as_of_date"])
        iv30 = v["iv30"].astype(float) * 100
        hv = v["hv_forward_21"].astype(float) * 100
        dots = "o" if len(v) < IV_DOTS_BELOW else None
        ax.plot(x, iv30, color="tab:red", lw=1.2, marker=dots, ms=3, label="iv30")
        ax.plot(x, hv, color="tab:blue", lw=1.2, marker=dots, ms=3, label="HV next 21")
        complete = v["vrp"].notna().to_numpy()
        if complete.any():
            ax.fill_between(x, iv30, hv, where=complete & (iv30 >= hv).to_numpy(), color="tab:green", alpha=0.25,
                            interpolate=True, label="VRP > 0")
            ax.fill_between(x, iv30, hv, where=complete & (iv30 < hv).to_numpy(), color="tab:orange", alpha=0.25,
                            interpolate=True, label="VRP < 0")
        pending = int((~complete).sum())
        ax.set_title(f"{symbol}" + (f" ({pending} pending)" if pending else ""), fontsize=9)
        _date_panel(ax, window, "no snapshots" if v.empty else None)
    return _finish(figure, axes if symbols else [], title, dpi)


def render_vrp_chart(
    con: duckdb.DuckDBPyConnection,
    reports_dir: Path,
    session: date | None = None,
    *,
    top_n: int = TOP_N,
    fallback_symbols: Iterable[str] = (),
    window_days: int = WINDOW_DAYS,
    dpi: int = DPI,
) -> VrpChart:
    """The VRP history of the most-held underlyings (else the watchlist), saved as
    ``reports_dir/vrp_chart_<session>.png``. The window ends at ``session`` (default: the newest
    ``vrp`` date) and spans ``window_days``."""
    newest = con.execute("SELECT max(as_of_date) FROM vrp").fetchone()[0]
    end = session or newest or _latest_session(con) or date.today()
    start = end - timedelta(days=window_days)
    symbols, basis = chart_symbols(con, top_n, fallback_symbols)
    vrp = _vrp_series(con, symbols, start, end)
    title = f"Variance risk premium: iv30 vs realised next 21 sessions, {start} .. {end} ({basis})"
    png = render_vrp_png(vrp, symbols, title, (start, end), dpi=dpi)
    path = write_bytes_atomic(Path(reports_dir) / f"vrp_chart_{end.isoformat()}.png", png)
    return VrpChart(path=path, png=png, symbols=symbols, basis=basis, session=end,
                    complete_rows=int(vrp["vrp"].notna().sum()) if not vrp.empty else 0)


def render_risk_chart(con: duckdb.DuckDBPyConnection, reports_dir: Path, dpi: int = DPI) -> tuple[Path, bytes] | None:
    """Beta-weighted delta and theta per underlying (all accounts) of the latest Greeks snapshot.

    Saved as ``reports_dir/risk_chart_<session>.png``; None when no position has been priced yet.
    """
    risk = con.execute(
        """
        SELECT as_of_date, underlying_symbol, beta_weighted_delta, position_theta FROM portfolio_risk
        WHERE account_number = 'ALL' ORDER BY abs(coalesce(beta_weighted_delta, 0)) DESC, underlying_symbol
        """
    ).df()
    if risk.empty:
        return None
    session = risk["as_of_date"].iloc[0]
    figure = Figure(figsize=(8.0, 0.35 * len(risk) + 1.5), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    bwd_ax, theta_ax = figure.subplots(1, 2, sharey=True)
    labels = risk["underlying_symbol"].tolist()[::-1]
    for ax, column, title, unit in (
        (bwd_ax, "beta_weighted_delta", "beta-weighted delta", "SPY shares"),
        (theta_ax, "position_theta", "theta", "$ per day"),
    ):
        values = risk[column].fillna(0.0).to_numpy()[::-1]
        ax.barh(labels, values, color=["tab:green" if v >= 0 else "tab:red" for v in values])
        ax.axvline(0, color="black", lw=0.6)
        ax.set_title(f"{title} ({unit})", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    png = _finish(figure, [], f"Risk per underlying, all accounts, {session}", dpi)
    return write_bytes_atomic(Path(reports_dir) / f"risk_chart_{pd.Timestamp(session).date().isoformat()}.png", png), png


def render_account_chart(con: duckdb.DuckDBPyConnection, reports_dir: Path, dpi: int = DPI) -> tuple[Path, bytes] | None:
    """BP used % of net liq and theta per day, all accounts, over the evenings the warehouse holds;
    None before the first balances snapshot."""
    history = con.execute(
        """
        WITH bp AS (
            SELECT as_of_date, sum(used_derivative_buying_power) / nullif(sum(net_liquidating_value), 0) AS bp_used
            FROM balances GROUP BY as_of_date
        ),
        theta AS (SELECT as_of_date, sum(position_theta) AS theta FROM position_greeks GROUP BY as_of_date)
        SELECT as_of_date, bp.bp_used, theta.theta FROM bp LEFT JOIN theta USING (as_of_date) ORDER BY as_of_date
        """
    ).df()
    if history.empty:
        return None
    figure, (bp_ax, theta_ax) = _panel_grid(2, dpi, "")
    x = pd.to_datetime(history["as_of_date"])
    window = (x.min().date(), x.max().date())
    dots = "o" if len(history) < 30 else None
    bp_ax.plot(x, history["bp_used"] * 100, color="tab:purple", marker=dots, ms=3, label="BP used")
    _date_panel(bp_ax, window, None)
    bp_ax.set_title("buying power used, % of net liq", fontsize=9)
    theta_ax.plot(x, history["theta"], color="tab:green", marker=dots, ms=3, label="theta")
    _date_panel(theta_ax, window, None)
    theta_ax.set_ylabel("$ per day", fontsize=7)
    theta_ax.set_title("theta per day (all accounts)", fontsize=9)
    png = _finish(figure, [], "The account over the evenings", dpi)
    session = window[1].isoformat()
    return write_bytes_atomic(Path(reports_dir) / f"account_chart_{session}.png", png), png


def render_journal_charts(con: duckdb.DuckDBPyConnection, reports_dir: Path, dpi: int = DPI) -> dict[str, tuple[Path, bytes, str]]:
    """The journal's two pictures, each when there is something to draw: net liq over time (all
    accounts: our own balances, else the broker's history) with realised P&L by month, and the
    closed trades' outcome by Tastytrade IV rank at entry. Key -> (file, PNG, caption)."""
    drawn: dict[str, tuple[Path, bytes, str]] = {}
    net_liq = con.execute(
        """
        WITH own AS (SELECT as_of_date AS day, sum(net_liquidating_value) AS net_liq FROM balances GROUP BY ALL),
        broker AS (SELECT session_date AS day, sum(close) AS net_liq FROM net_liq_history GROUP BY ALL)
        SELECT coalesce(o.day, b.day) AS day, coalesce(o.net_liq, b.net_liq) AS net_liq
        FROM own AS o FULL JOIN broker AS b ON o.day = b.day ORDER BY 1
        """
    ).df()
    months = con.execute("SELECT month, realized_pnl FROM pnl_by_month WHERE account_number = 'ALL' ORDER BY month").df()
    session = con.execute("SELECT max(as_of_date) FROM trades").fetchone()[0]
    stamp = session.isoformat() if session else "none"
    if not net_liq.empty or not months.empty:
        figure, (liq_ax, pnl_ax) = _panel_grid(2, dpi, "")
        if not net_liq.empty:
            x = pd.to_datetime(net_liq["day"])
            liq_ax.plot(x, net_liq["net_liq"] / 1000, color="tab:blue", label="net liq")
            _date_panel(liq_ax, (x.min().date(), x.max().date()), None)
        liq_ax.set_ylabel("$ thousand", fontsize=7)
        liq_ax.set_title("net liquidating value (all accounts)", fontsize=9)
        if not months.empty:
            x = pd.to_datetime(months["month"])
            colors = ["tab:green" if v >= 0 else "tab:red" for v in months["realized_pnl"]]
            pnl_ax.bar(x, months["realized_pnl"], width=20, color=colors)
            pnl_ax.xaxis.set_major_formatter(mdates.DateFormatter("%b %y"))
            pnl_ax.tick_params(labelsize=7)
        pnl_ax.set_ylabel("$", fontsize=7)
        pnl_ax.set_title("realised P&L of the trades closed, by month", fontsize=9)
        png = _finish(figure, [], "Net liq over time, realised P&L by month", dpi)
        path = write_bytes_atomic(Path(reports_dir) / f"journal_pnl_{stamp}.png", png)
        drawn["journal_pnl_chart"] = (path, png, "Net liq over time (all accounts) and realised P&L by month")
    buckets = con.execute(
        """
        SELECT bucket, trades, win_rate, avg_pnl FROM strategy_outcomes
        WHERE dimension = 'iv_rank_at_entry' ORDER BY bucket = 'unknown', bucket
        """
    ).df()
    if not buckets.empty:
        figure, (rate_ax, pnl_ax) = _panel_grid(2, dpi, "")
        labels = [f"{b}\n({n})" for b, n in zip(buckets["bucket"], buckets["trades"])]
        rate_ax.bar(labels, buckets["win_rate"] * 100, color="tab:blue")
        rate_ax.set_title("win rate %, by IV rank at entry (trades)", fontsize=9)
        pnl_ax.bar(labels, buckets["avg_pnl"], color=["tab:green" if v >= 0 else "tab:red" for v in buckets["avg_pnl"]])
        pnl_ax.set_title("average realised P&L per trade, $", fontsize=9)
        for ax in (rate_ax, pnl_ax):
            ax.tick_params(labelsize=7)
        png = _finish(figure, [], "Outcome by IV rank at entry (closed trades)", dpi)
        path = write_bytes_atomic(Path(reports_dir) / f"journal_outcomes_{stamp}.png", png)
        drawn["journal_outcome_chart"] = (path, png, "Win rate and average P&L of closed trades by Tastytrade IV rank at entry")
    return drawn
