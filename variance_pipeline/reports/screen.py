"""Tonight's candidates: which names of the universe are worth selling premium in, and why the
others are not.

A premium seller wants implied volatility that is high against its own past (our own IV rank or
percentile, from the snapshots we landed, not the broker's number) and above what the stock
actually realises (IV over HV20), in a liquid option chain, without an earnings report inside the
usual trade length (45 days to expiration), and in a name not already in the book. Each rule is a
threshold of ``Screen``; the page prints them, and every name that fails says which rule it failed,
so an empty list is an answer ("nothing passes because ..."), not a blank.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

import duckdb

from variance_pipeline.reports.formatting import days, number, pct, ratio


@dataclass(frozen=True)
class Screen:
    """The candidate screen's thresholds (the ``report_screen`` resource and ``make report`` flags)."""

    min_iv_rank: float = 0.30  # our own IV rank at least this ...
    min_iv_percentile: float = 0.50  # ... or our own IV percentile at least this
    min_iv_hv_ratio: float = 1.0  # implied volatility over HV20 above this
    min_liquidity_rating: int = 3  # Tastytrade's liquidity rating (0-5) at least this
    dte_window: int = 45  # no earnings report within this many calendar days (the usual trade length)
    max_rows: int = 25  # candidates listed (the best first); the rest are counted

    def described(self) -> list[tuple[str, str]]:
        """The thresholds as the page prints them."""
        return [
            ("IV rank (own) or IV percentile (own)",
             f"\u2265 {pct(self.min_iv_rank, digits=0)} or \u2265 {pct(self.min_iv_percentile, digits=0)}"),
            ("IV / HV20", f"> {ratio(self.min_iv_hv_ratio)}"),
            ("Liquidity rating", f"\u2265 {self.min_liquidity_rating} of 5"),
            ("No earnings within", days(self.dte_window)),
            ("Not already held", "yes"),
        ]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Candidates:
    passed: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)  # each with its "reasons"
    screened: int = 0
    more: int = 0  # passing names beyond max_rows
    notes: list[str] = field(default_factory=list)


SCREEN_SQL = """
WITH latest_universe AS (
    SELECT symbol, source FROM universe WHERE as_of_date = (SELECT max(as_of_date) FROM universe)
),
names AS (
    SELECT symbol, source FROM latest_universe
    UNION ALL
    -- No universe landed yet (a warehouse loaded from partitions only): every symbol with metrics.
    SELECT symbol, 'watchlist' FROM vol_dashboard
    WHERE symbol IS NOT NULL AND NOT EXISTS (SELECT 1 FROM latest_universe)
),
held AS (
    SELECT DISTINCT coalesce(root_symbol, underlying_symbol, symbol) AS symbol
    FROM positions WHERE as_of_date = (SELECT max(as_of_date) FROM positions)
)
SELECT n.symbol, n.source, v.price, v.implied_volatility, v.hv20, v.iv_hv20_ratio, v.iv_rank_own,
       v.iv_percentile_own, v.iv_rank_own_reason, v.iv_history_sessions, v.iv_rank AS broker_iv_rank,
       v.liquidity_rating, v.earnings_date, v.metrics_as_of,
       h.symbol IS NOT NULL OR n.source LIKE 'held%' AS held
FROM names AS n
LEFT JOIN vol_dashboard AS v USING (symbol)
LEFT JOIN held AS h USING (symbol)
ORDER BY n.symbol
"""


def _reasons(row: dict[str, Any], screen: Screen, evening: date) -> list[str]:
    """Every rule ``row`` fails, in words (empty: a candidate)."""
    reasons = []
    if row["held"]:
        reasons.append("already held")
    rank, percentile = number(row["iv_rank_own"]), number(row["iv_percentile_own"])
    if rank is None and percentile is None:
        reasons.append(f"no own IV rank yet ({row['iv_rank_own_reason'] or 'no IV snapshots landed'})")
    elif not ((rank or 0) >= screen.min_iv_rank or (percentile or 0) >= screen.min_iv_percentile):
        reasons.append(f"IV rank {pct(rank, digits=0)} / percentile {pct(percentile, digits=0)} too low")
    iv_hv = number(row["iv_hv20_ratio"])
    if iv_hv is None:
        reasons.append("no IV / HV20 (IV or HV20 missing)")
    elif iv_hv <= screen.min_iv_hv_ratio:
        reasons.append(f"IV / HV20 {ratio(iv_hv)} not above {ratio(screen.min_iv_hv_ratio)}")
    liquidity = number(row["liquidity_rating"])
    if liquidity is None:
        reasons.append("no liquidity rating")
    elif liquidity < screen.min_liquidity_rating:
        reasons.append(f"liquidity {liquidity:.0f} below {screen.min_liquidity_rating}")
    earnings = row["earnings_date"]
    if earnings is not None and evening <= earnings <= date.fromordinal(evening.toordinal() + screen.dte_window):
        reasons.append(f"earnings in {days((earnings - evening).days)}")
    return reasons


def screen_candidates(con: duckdb.DuckDBPyConnection, screen: Screen, evening: date) -> Candidates:
    """The universe through ``screen``: who passes (best IV rank first) and why the others fail."""
    cursor = con.execute(SCREEN_SQL)
    names = [d[0] for d in cursor.description]
    rows = [dict(zip(names, values)) for values in cursor.fetchall()]
    result = Candidates(screened=len(rows))
    for row in rows:
        row["reasons"] = _reasons(row, screen, evening)
        (result.rejected if row["reasons"] else result.passed).append(row)
    result.passed.sort(key=lambda r: (-(number(r["iv_rank_own"]) or 0), -(number(r["iv_hv20_ratio"]) or 0), r["symbol"]))
    result.more = max(0, len(result.passed) - screen.max_rows)
    result.passed = result.passed[: screen.max_rows]
    if not rows:
        result.notes.append("No symbols to screen: the warehouse holds no universe and no market metrics yet.")
    elif not result.passed:
        short = sum(1 for r in result.rejected if r["iv_rank_own"] is None and r["iv_percentile_own"] is None)
        why = (
            f" {short} of {len(rows)} have no own IV rank yet: it is computed from our own IV snapshots, "
            "one per evening, and needs a few weeks of them (each name's reason is below)."
            if short else ""
        )
        result.notes.append(f"No candidate passes tonight's screen.{why}")
    return result
