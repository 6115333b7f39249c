"""The journal: the broker's transactions, the account's net-liq history, and the trades they form.

``transactions`` is what ``GET /accounts/{n}/transactions`` says, one row per transaction id, money
signed by its ``*-effect`` (a credit is positive, a fee charged negative), landed in the partition
of the evening that first fetched it (the warehouse upserts by ``id``: an overlap fetched again
never duplicates). ``trades`` and ``trade_transactions`` are computed from every landed transaction
(``transforms/trades.py``); the entry context of a trade (what our own history said on the session
it was opened) is filled by the warehouse from its own tables at each load, so it is NULL in the
lake and in the warehouse when no snapshot of that session exists (``entry_context_note`` says why).
"""

from __future__ import annotations

import pandera.pandas as pda

from variance_pipeline.schemas.columns import BOOLEAN, DATE, FINITE, FLOAT, INTEGER, NON_EMPTY, STRING, TIMESTAMP, Column
from variance_pipeline.schemas.dataset import Dataset

_ACCOUNT = Column("account_number", STRING, "Tastytrade account number", checks=(NON_EMPTY,))
_FETCHED = Column("fetched_at", TIMESTAMP, "when the history was fetched", unit="UTC")
_WAREHOUSE = "filled by the warehouse at each load from its own history (NULL in the lake)"


def _usd(name: str, description: str, nullable: bool = True) -> Column:
    return Column(name, FLOAT, description, nullable, "USD", (FINITE,))


def _fee(name: str, description: str) -> Column:
    return Column(name, FLOAT, f"{description}, signed by its effect (charged: negative)", True, "USD", (FINITE,))


TRANSACTIONS = Dataset(
    name="transactions",
    description="Every transaction of every open account (GET /accounts/{n}/transactions), as the broker "
    "sent it, money signed by its *-effect (a credit is positive).",
    date_column="transaction_date",
    grain=("id",),
    load="upsert",
    columns=(
        Column("id", INTEGER, "the broker's transaction id"),
        _ACCOUNT,
        Column("executed_at", TIMESTAMP, "when it was executed", unit="UTC"),
        Column("transaction_date", DATE, "the broker's date of the transaction (New York)"),
        Column("transaction_type", STRING, "Trade, Receive Deliver, Money Movement, ...", checks=(NON_EMPTY,)),
        Column("transaction_sub_type", STRING, "Sell to Open, Assignment, Expiration, Deposit, Dividend, ...",
               checks=(NON_EMPTY,)),
        Column("action", STRING, "Buy to Open, Sell to Close, ...; NULL on an option's removal (expiration, "
               "assignment, exercise: it closes whatever was open)", nullable=True),
        Column("symbol", STRING, "the instrument; NULL for cash movements", nullable=True),
        Column("instrument_type", STRING, "Equity, Equity Option, Future, Future Option, ...", nullable=True),
        Column("underlying_symbol", STRING, "the underlying as the broker sends it (a future option's: its future)",
               nullable=True),
        Column("root_symbol", STRING, "the underlying market metrics and candles key (SPY, /ES)", nullable=True),
        Column("quantity", FLOAT, "as sent: unsigned (the action or the position it closes gives the side)", True,
               "contracts or shares", (pda.Check.ge(0),)),
        Column("price", FLOAT, "price per unit (an assignment's stock: the strike)", True, "USD per unit"),
        _usd("value", "cash before fees, signed by value-effect (credit: positive)", False),
        _usd("net_value", "cash after fees, signed by net-value-effect: what the account's cash moved by", False),
        _fee("commission", "commission"),
        _fee("clearing_fees", "clearing fees"),
        _fee("regulatory_fees", "regulatory fees"),
        _fee("proprietary_index_option_fees", "proprietary index option fees"),
        _fee("other_charge", "other charge"),
        Column("description", STRING, "the broker's description", nullable=True),
        Column("order_id", INTEGER, "the order it filled (legs of one order share it)", nullable=True),
        Column("is_estimated_fee", BOOLEAN, "the fees are the broker's estimate", nullable=True),
        Column("trade_id", STRING, f"the trade it belongs to ({_WAREHOUSE}, from trade_transactions)", nullable=True),
        _FETCHED,
    ),
)

NET_LIQ_HISTORY = Dataset(
    name="net_liq_history",
    description="Each account's net liquidating value per session: GET /accounts/{n}/net-liq/history (its points "
    "of a New York date as one OHLC row), and end-of-day balance snapshots for the days before this project's "
    "own balances began.",
    date_column="session_date",
    grain=("account_number", "session_date"),
    load="upsert",
    columns=(
        _ACCOUNT,
        Column("session_date", DATE, "the New York date of the points"),
        _usd("open", "first point's net liq (a snapshot: its net liq)"),
        _usd("high", "highest point's net liq"),
        _usd("low", "lowest point's net liq"),
        _usd("close", "the day's last net liq", False),
        _usd("pending_cash_close", "pending cash at the last point"),
        _usd("total_close", "net liq with pending cash at the last point"),
        Column("points", INTEGER, "points the row summarises", checks=(pda.Check.ge(1),)),
        Column("source", STRING, "net_liq_history or balance_snapshot", checks=(pda.Check.isin(
            ["net_liq_history", "balance_snapshot"]),)),
        _FETCHED,
    ),
)

OUTCOMES = ["win", "loss", "scratch"]

TRADES = Dataset(
    name="trades",
    description="Trades (chains) built from the transactions: the legs of one order, rolls continuing the chain, "
    "assignments and expirations closing legs (an assignment's stock opens a linked chain), with the "
    "outcome and what our own history said when each was opened.",
    date_column="as_of_date",
    grain=("trade_id",),
    load="replace_all",
    columns=(
        Column("trade_id", STRING, "account and the id of its first transaction", checks=(NON_EMPTY,)),
        Column("as_of_date", DATE, "the evening the journal was computed"),
        _ACCOUNT,
        Column("underlying_symbol", STRING, "the underlying (its root: SPY, /ES)", checks=(NON_EMPTY,)),
        Column("strategy", STRING, "from the opening legs: short_put, short_call, covered_call, strangle, straddle, "
               "iron_condor, vertical, calendar, ratio, long_option, stock, future, other"),
        Column("status", STRING, "open or closed", checks=(pda.Check.isin(["open", "closed"]),)),
        Column("opened_at", TIMESTAMP, "the first fill", unit="UTC"),
        Column("opened_on", DATE, "its New York date (the session the entry context is read from)"),
        Column("closed_at", TIMESTAMP, "when the last leg left (closed trades)", True, "UTC"),
        Column("closed_date", DATE, "its New York date", nullable=True),
        Column("days_held", INTEGER, "calendar days from opening to closing (open: to as_of_date)", True, "days",
               (pda.Check.ge(0),)),
        Column("legs", INTEGER, "distinct instruments the chain held", checks=(pda.Check.ge(1),)),
        Column("open_legs", INTEGER, "instruments still held", checks=(pda.Check.ge(0),)),
        Column("orders", INTEGER, "orders that traded it", checks=(pda.Check.ge(0),)),
        Column("rolls", INTEGER, "orders that closed and reopened it (one order, or two on one session)",
               checks=(pda.Check.ge(0),)),
        _usd("opening_credit", "value of the opening order: > 0 a credit received, < 0 a debit paid", False),
        _usd("closing_cost", "cash paid to close the last legs (a credit received: negative); NULL while open"),
        _usd("premium_sold", "credits received for options sold over the whole chain (rolls included)", False),
        _usd("fees", "fees paid over the chain (a cost: positive)", False),
        _usd("realized_pnl", "closed: the sum of its transactions' net_value; open: what is realised so far (FIFO "
             "lots: the net value of its transactions plus the cost of the lots still open)", False),
        _usd("unrealized_pnl", "open trades: the unrealised P&L of its open legs in the evening's position_pnl"),
        _usd("max_profit", "net option premium collected (a credit trade's most it can make); NULL for debit, "
             "stock and futures trades"),
        Column("pct_of_max_profit_captured", FLOAT, "realized_pnl / max_profit (closed credit trades)", True,
               "fraction", (FINITE,)),
        Column("outcome", STRING, "win, loss, or scratch (|P&L| within 5 % of the opening credit, or of the "
               "option premium sold when the trade holds stock or a future, or $1); NULL while open", nullable=True, checks=(pda.Check.isin(OUTCOMES),)),
        Column("assigned", BOOLEAN, "a short leg was assigned (or a long one exercised)"),
        Column("parent_trade_id", STRING, "the trade whose assignment delivered this one's stock or future (the "
               "wheel)", nullable=True),
        Column("expiration_date", DATE, "nearest expiration of the opening order's options", nullable=True),
        Column("dte_at_entry", INTEGER, "calendar days from opening to that expiration (from the symbols: known "
               "for every trade)", True, "days"),
        Column("iv_rank_at_entry", FLOAT, f"Tastytrade IV rank on the opening session ({_WAREHOUSE})", True, "fraction"),
        Column("iv_rank_own_at_entry", FLOAT, f"our own IV rank on the opening session ({_WAREHOUSE})", True, "fraction"),
        Column("iv_percentile_own_at_entry", FLOAT, f"our own IV percentile on the opening session ({_WAREHOUSE})",
               True, "fraction"),
        Column("iv30_at_entry", FLOAT, f"constant-maturity 30-day IV on the opening session ({_WAREHOUSE})", True,
               "fraction"),
        Column("iv_hv20_spread_at_entry", FLOAT, f"implied volatility - HV20 on the opening session ({_WAREHOUSE})",
               True, "fraction"),
        Column("vrp_at_entry", FLOAT, f"iv30 - the next 21 sessions' realised volatility ({_WAREHOUSE})", True,
               "fraction"),
        Column("short_delta_at_entry", FLOAT, f"largest |delta| of the short options on the opening evening "
               f"({_WAREHOUSE})", True, "per unit"),
        _usd("bp_at_entry", f"buying power of its underlying on the opening evening's margin report, shared by the "
             f"account's trades opened on it that evening ({_WAREHOUSE})"),
        Column("bp_used_pct_at_entry", FLOAT, f"the account's BP used % on the opening evening ({_WAREHOUSE})", True,
               "fraction"),
        Column("earnings_inside", BOOLEAN, f"an earnings report fell between opening and closing (or expiration), "
               f"by its own day and BMO/AMC; NULL when a report near the trade has no known day ({_WAREHOUSE})",
               nullable=True),
        Column("entry_context_note", STRING, f"why entry context is missing, NULL when complete ({_WAREHOUSE})",
               nullable=True),
    ),
)

TRADE_TRANSACTIONS = Dataset(
    name="trade_transactions",
    description="Which trade each transaction belongs to and what it did there (the journal's lineage).",
    date_column="as_of_date",
    grain=("id",),
    load="replace_all",
    columns=(
        Column("id", INTEGER, "the transaction id"),
        Column("as_of_date", DATE, "the evening the journal was computed"),
        _ACCOUNT,
        Column("trade_id", STRING, "the trade", checks=(NON_EMPTY,)),
        Column("role", STRING, "open, close, roll, assignment, exercise, expiration, delivery, dividend, settlement"),
        Column("signed_quantity", FLOAT, "the position change it made (bought or received: +); NULL for cash rows",
               True, "contracts or shares"),
    ),
)

JOURNAL = (TRANSACTIONS, NET_LIQ_HISTORY, TRADES, TRADE_TRANSACTIONS)
