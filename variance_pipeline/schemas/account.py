"""The account datasets: which accounts exist, their balances, margin report and trading status.

Evening snapshots of ``/customers/me/accounts``, ``/accounts/{n}/balances``,
``/margin/accounts/{n}/requirements`` and ``/accounts/{n}/trading-status``. Money is in USD with
the sign the trader reads (an amount the API sends unsigned with a ``*-effect`` of Debit is
negative); requirements and buying power are magnitudes. A missing optional field is NULL, never
zero: the 2023 recordings lack ``used-derivative-buying-power``, and a NULL there keeps BP used %
honest (unknown) instead of 0 %.
"""

from __future__ import annotations

import pandera.pandas as pda

from variance_pipeline.schemas.columns import BOOLEAN, DATE, FINITE, FLOAT, INTEGER, NON_EMPTY, STRING, TIMESTAMP, Column
from variance_pipeline.schemas.dataset import Dataset

_SESSION = Column("as_of_date", DATE, "the session whose evening snapshot this is")
_ACCOUNT = Column("account_number", STRING, "Tastytrade account number", checks=(NON_EMPTY,))
_FETCHED = Column("fetched_at", TIMESTAMP, "when the snapshot was taken", unit="UTC")


def _usd(name: str, description: str, nullable: bool = True) -> Column:
    return Column(name, FLOAT, description, nullable, "USD", (FINITE,))


def _requirement(name: str, description: str) -> Column:
    return Column(name, FLOAT, description, True, "USD", (pda.Check.ge(0), FINITE))


ACCOUNTS = Dataset(
    name="accounts",
    description="The trader's accounts as /customers/me/accounts lists them (open and closed).",
    date_column="as_of_date",
    grain=("as_of_date", "account_number"),
    columns=(
        _SESSION,
        _ACCOUNT,
        Column("nickname", STRING, "the account's nickname", nullable=True),
        Column("account_type_name", STRING, "Individual, Roth IRA, ...", nullable=True),
        Column("margin_or_cash", STRING, "Margin or Cash", nullable=True),
        Column("is_closed", BOOLEAN, "closed accounts hold nothing and are not asked for balances"),
        Column("is_futures_approved", BOOLEAN, "futures approval", nullable=True),
        Column("suitable_options_level", STRING, "the options level the account is suitable for", nullable=True),
        Column("authority_level", STRING, "owner, trade-only, ...", nullable=True),
        _FETCHED,
    ),
)

BALANCES = Dataset(
    name="balances",
    description="Each open account's balances at the evening snapshot (GET /accounts/{n}/balances).",
    date_column="as_of_date",
    grain=("as_of_date", "account_number"),
    columns=(
        _SESSION,
        _ACCOUNT,
        _usd("net_liquidating_value", "net liquidating value: cash + the market value of the positions", False),
        _usd("cash_balance", "cash (negative: a margin debit)"),
        _usd("margin_equity", "equity the margin requirement is measured against"),
        _requirement("equity_buying_power", "buying power for stock"),
        _requirement("derivative_buying_power", "option buying power left"),
        _requirement("used_derivative_buying_power", "option buying power in use (NULL when the API omits it)"),
        _requirement("maintenance_requirement", "the account's maintenance requirement"),
        _requirement("futures_margin_requirement", "futures margin requirement"),
        _usd("maintenance_excess", "margin equity above the maintenance requirement"),
        _usd("pending_cash", "cash in flight, signed by pending-cash-effect"),
        _usd("long_equity_value", "market value of long stock"),
        _usd("short_equity_value", "market value of short stock (a magnitude)"),
        _usd("long_derivative_value", "market value of long options"),
        _usd("short_derivative_value", "market value of short options (a magnitude)"),
        _usd("long_futures_value", "notional value of long futures"),
        _usd("short_futures_value", "notional value of short futures (a magnitude)"),
        _usd("long_futures_derivative_value", "market value of long future options"),
        _usd("short_futures_derivative_value", "market value of short future options (a magnitude)"),
        _usd("maintenance_call_value", "an open maintenance call (0: none)"),
        Column("snapshot_date", DATE, "the broker's own date for these balances", nullable=True),
        Column("updated_at", TIMESTAMP, "when the broker last changed them", True, "UTC"),
        _FETCHED,
    ),
)

MARGIN_REQUIREMENTS = Dataset(
    name="margin_requirements",
    description="The margin report per underlying (GET /margin/accounts/{n}/requirements, one row per group).",
    date_column="as_of_date",
    grain=("as_of_date", "account_number", "underlying_symbol"),
    columns=(
        _SESSION,
        _ACCOUNT,
        Column("underlying_symbol", STRING, "the group's underlying", checks=(NON_EMPTY,)),
        Column("description", STRING, "the broker's description of the group", nullable=True),
        _requirement("buying_power", "buying power the group uses"),
        _requirement("margin_requirement", "initial margin requirement of the group"),
        _requirement("maintenance_requirement", "maintenance requirement of the group"),
        Column("expected_price_range_up_percent", FLOAT, "the up move the requirement is computed for, as sent",
               nullable=True, unit="as sent (undocumented; recorded 0.3, 0.5)"),
        Column("expected_price_range_down_percent", FLOAT, "the down move the requirement is computed for, as sent",
               nullable=True, unit="as sent"),
        Column("point_of_no_return_percent", FLOAT, "the move that would wipe out the account, as sent", nullable=True,
               unit="as sent"),
        Column("margin_calculation_type", STRING, "Reg T, IRA Margin, Portfolio Margin, ...", nullable=True),
        _FETCHED,
    ),
)

TRADING_STATUS = Dataset(
    name="trading_status",
    description="Each open account's trading status (GET /accounts/{n}/trading-status).",
    date_column="as_of_date",
    grain=("as_of_date", "account_number"),
    columns=(
        _SESSION,
        _ACCOUNT,
        Column("options_level", STRING, "the approved options level", nullable=True),
        Column("is_in_margin_call", BOOLEAN, "an open margin call", nullable=True),
        Column("is_portfolio_margin_enabled", BOOLEAN, "portfolio margin", nullable=True),
        Column("is_closing_only", BOOLEAN, "only closing orders allowed", nullable=True),
        Column("is_frozen", BOOLEAN, "the account is frozen", nullable=True),
        Column("is_futures_enabled", BOOLEAN, "futures trading enabled", nullable=True),
        Column("short_calls_enabled", BOOLEAN, "naked short calls allowed", nullable=True),
        Column("is_pattern_day_trader", BOOLEAN, "flagged as a pattern day trader", nullable=True),
        Column("day_trade_count", INTEGER, "day trades in the rolling window", nullable=True, checks=(pda.Check.ge(0),)),
        Column("equities_margin_calculation_type", STRING, "Reg T, IRA Margin, ...", nullable=True),
        Column("updated_at", TIMESTAMP, "when the broker last changed it", True, "UTC"),
        _FETCHED,
    ),
)
