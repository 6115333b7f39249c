"""``iv_constant_maturity``: implied volatility at 30, 60 and 90 calendar days per evening snapshot.

An evening's term structure only affects that evening, so a refresh rewrites exactly the
``as_of_date``s it is given (delete, then insert).
"""

from __future__ import annotations

from datetime import date

import duckdb

TARGET_DAYS = (30, 60, 90)     # constant maturities, calendar days

_CONSTANT_MATURITY_SQL = f"""
INSERT INTO iv_constant_maturity
WITH ts AS (
    SELECT symbol, as_of_date, expiration_date, days_to_expiration AS days, implied_volatility AS iv
    FROM iv_term_structure_by_expiration
    WHERE as_of_date BETWEEN $first AND $last  -- constant bounds: zone maps skip the rest
      AND as_of_date IN (SELECT as_of_date FROM _vh_days)
),
targets AS (
    SELECT unnest({list(TARGET_DAYS)}) AS target_days
),
bracket AS (
    -- The expirations on each side of the target (the same one twice on an exact hit).
    SELECT
        ts.symbol,
        ts.as_of_date,
        t.target_days,
        max(ts.days)            FILTER (WHERE ts.days <= t.target_days) AS d1,
        arg_max(ts.iv, ts.days) FILTER (WHERE ts.days <= t.target_days) AS iv1,
        min(ts.days)            FILTER (WHERE ts.days >= t.target_days) AS d2,
        arg_min(ts.iv, ts.days) FILTER (WHERE ts.days >= t.target_days) AS iv2
    FROM ts CROSS JOIN targets AS t
    GROUP BY ts.symbol, ts.as_of_date, t.target_days
),
interpolated AS (
    -- Linear in total variance w = iv^2 * T, T in years of 365 days; never extrapolated.
    SELECT
        symbol,
        as_of_date,
        target_days,
        CASE
            WHEN d1 IS NULL OR d2 IS NULL THEN NULL
            WHEN d1 = d2 THEN iv1
            ELSE sqrt(
                (iv1 * iv1 * d1 / 365.0
                 + (iv2 * iv2 * d2 / 365.0 - iv1 * iv1 * d1 / 365.0) * (target_days - d1) / (d2 - d1))
                / (target_days / 365.0))
        END AS iv
    FROM bracket
),
by_target AS (
    SELECT
        symbol,
        as_of_date,
        max(iv) FILTER (WHERE target_days = 30) AS iv30,
        max(iv) FILTER (WHERE target_days = 60) AS iv60,
        max(iv) FILTER (WHERE target_days = 90) AS iv90
    FROM interpolated
    GROUP BY symbol, as_of_date
),
front AS (
    SELECT
        symbol,
        as_of_date,
        arg_min(iv, days)       AS front_iv,
        min(expiration_date)    AS front_expiration,
        min(days)               AS front_days,
        count(*)                AS expirations_used
    FROM ts
    GROUP BY symbol, as_of_date
),
metrics AS (
    SELECT symbol, as_of_date, iv_30_day
    FROM market_metrics
    WHERE as_of_date BETWEEN $first AND $last  -- constant bounds: zone maps skip the rest
      AND as_of_date IN (SELECT as_of_date FROM _vh_days)
),
curve AS (
    SELECT p.*, f.front_iv, f.front_expiration, f.front_days, f.expirations_used
    FROM by_target AS p JOIN front AS f USING (symbol, as_of_date)
)
SELECT
    coalesce(c.symbol, m.symbol)            AS symbol,
    coalesce(c.as_of_date, m.as_of_date)    AS as_of_date,
    c.iv30,
    c.iv60,
    c.iv90,
    c.iv90 - c.iv30                         AS term_slope,
    c.front_iv,
    c.front_expiration,
    c.front_days,
    c.front_iv / nullif(c.iv30, 0)          AS front_to_30_ratio,
    coalesce(c.expirations_used, 0)         AS expirations_used,
    m.iv_30_day                             AS tastytrade_iv30
FROM curve AS c
FULL OUTER JOIN metrics AS m ON m.symbol = c.symbol AND m.as_of_date = c.as_of_date
"""


def refresh_constant_maturity(con: duckdb.DuckDBPyConnection, days: list[date]) -> int:
    con.execute("CREATE OR REPLACE TEMP TABLE _vh_days AS SELECT unnest(CAST(? AS DATE[])) AS as_of_date", [days])
    bounds = {"first": days[0], "last": days[-1]}
    where = "as_of_date BETWEEN $first AND $last AND as_of_date IN (SELECT as_of_date FROM _vh_days)"
    con.execute(f"DELETE FROM iv_constant_maturity WHERE {where}", bounds)
    con.execute(_CONSTANT_MATURITY_SQL, bounds)
    count = con.execute(f"SELECT count(*) FROM iv_constant_maturity WHERE {where}", bounds).fetchone()[0]
    con.execute("DROP TABLE _vh_days")
    return int(count)
