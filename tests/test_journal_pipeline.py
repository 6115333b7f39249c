"""The journal in real Dagster runs on the simulator: an evening, a re-run, the next evening, and a
journal that forgot a fee. Real HTTP, real Parquet, a real DuckDB file."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from support import CLOCK, materialize, pipeline_settings
from variance_pipeline.calendar import sessions_in_range
from variance_pipeline.lake.layout import Lake
from variance_pipeline.simulator import SimulatorServer, engine
from variance_pipeline.simulator.faults import parse_rules

pytestmark = pytest.mark.slow

ACCOUNTS = ("5WT00001", "5WT00002")


def check(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    return next(c for c in result.get_asset_check_evaluations() if c.check_name == name)


def sql(data_dir: Path, query: str) -> list[tuple]:
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(query).fetchall()


def test_evenings_reconcile_rerun_duplicates_nothing_and_later_evenings_are_cheap(sim: SimulatorServer, tmp_path: Path) -> None:
    data = tmp_path / "data"
    instance = dg.DagsterInstance.ephemeral()
    first = materialize(pipeline_settings(data, sim.url), partition_key=CLOCK.date().isoformat(), instance=instance)
    assert first.success
    assert check(first, "journal_reconciles").passed, check(first, "journal_reconciles").description
    asked = sim.requests.by_endpoint()
    pages = sum(-(-n // 2000) for (n,) in sql(data, "SELECT count(*) FROM transactions GROUP BY account_number"))
    assert asked["transactions"] == pages  # the whole history: one request per page
    counts = sql(data, "SELECT (SELECT count(*) FROM transactions), (SELECT count(DISTINCT id) FROM transactions), "
                       "(SELECT count(*) FROM trades), (SELECT count(trade_id) FROM transactions)")[0]
    assert counts[0] == counts[1] and counts[2] > 100 and counts[3] >= counts[0] - 2  # deposits belong to no trade

    # Re-running the evening lands, loads and counts nothing twice.
    lake = Lake(data)
    landed = len(lake.read_partition("transactions", CLOCK.date()))
    sim.requests.clear()
    again = materialize(pipeline_settings(data, sim.url), partition_key=CLOCK.date().isoformat(), instance=instance)
    assert again.success and check(again, "journal_reconciles").passed
    assert len(lake.read_partition("transactions", CLOCK.date())) == landed
    assert sql(data, "SELECT count(*), count(DISTINCT id) FROM transactions")[0] == (counts[0], counts[0])
    assert sql(data, "SELECT count(*) FROM trades")[0][0] == counts[2]
    assert sim.requests.by_endpoint()["transactions"] == len(ACCOUNTS)  # now incremental

    # The next evening: one request per account for the journal, one for its net liq.
    following = sessions_in_range(CLOCK.date() + timedelta(days=1), CLOCK.date() + timedelta(days=7))[0]
    evening = CLOCK + timedelta(days=(following - CLOCK.date()).days)
    sim.requests.clear()
    sim.now = evening
    try:
        later = materialize(pipeline_settings(data, sim.url, now=evening), partition_key=following.isoformat(),
                            instance=instance)
    finally:
        sim.now = CLOCK
    assert later.success
    asked = sim.requests.by_endpoint()
    assert asked["transactions"] == len(ACCOUNTS) and asked["net-liq-history"] == len(ACCOUNTS)
    assert "balance-snapshots" not in asked
    reconciled = check(later, "journal_reconciles")
    assert reconciled.passed and reconciled.metadata["periods"].value == 2 * len(ACCOUNTS), reconciled.description
    total, distinct = sql(data, "SELECT count(*), count(DISTINCT id) FROM transactions")[0]
    assert total == distinct > counts[0]
    # A closed trade's realised P&L is the sum of its transactions' net value (rows shared by two
    # trades, rule 2 of transforms/trades.py, aside).
    off = sql(data, """
        SELECT count(*) FROM trades AS t JOIN (SELECT trade_id, sum(net_value) AS s FROM transactions GROUP BY 1) AS x
        USING (trade_id) WHERE t.status = 'closed' AND abs(t.realized_pnl - x.s) > 0.005""")[0][0]
    assert off <= 0.01 * counts[2]
    outcomes = sql(data, "SELECT dimension, count(*) FROM strategy_outcomes GROUP BY 1 ORDER BY 1")
    assert {d for d, _ in outcomes} == {"strategy", "iv_rank_at_entry", "dte_at_entry", "underlying"}
    history = sql(data, "SELECT source, count(*) FROM net_liq_history GROUP BY 1")
    assert dict(history)["net_liq_history"] > 300
    entry = sql(data, f"""SELECT count(*) FILTER (WHERE iv_rank_at_entry IS NOT NULL AND bp_used_pct_at_entry IS NOT NULL),
        count(*) FILTER (WHERE iv_rank_at_entry IS NULL AND entry_context_note LIKE '%no market_metrics snapshot%')
        FROM trades WHERE opened_on IN ('{CLOCK.date()}', '{following}') OR opened_on < '{CLOCK.date()}'""")[0]
    assert entry[1] > 100  # trades older than this project's history: NULL with the reason
    assert "journal_pnl_chart" in later.asset_materializations_for_node("journal_book")[0].metadata


def test_a_journal_that_forgot_a_fee_does_not_reconcile_and_says_by_how_much(tmp_path: Path) -> None:
    rule = parse_rules({"endpoint": "transactions", "kind": "drop_fee", "field": "clearing-fees"})
    with SimulatorServer(port=0, now=CLOCK, faults=rule) as forgetful:
        result = materialize(pipeline_settings(tmp_path / "data", forgetful.url), partition_key=CLOCK.date().isoformat(),
                             raise_on_error=False)
        honest = forgetful.app.faults  # the rule stays installed for the whole run
        assert honest.describe()[0]["fired"] >= 1
    reconciled = check(result, "journal_reconciles")
    assert not reconciled.passed
    assert "5WT00001" in reconciled.description and "difference" in reconciled.description
    # The difference is the clearing fees the journal no longer shows (every option and stock trade pays some).
    data = tmp_path / "data"
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        difference = con.execute("SELECT difference FROM account_reconciliation WHERE account_number = '5WT00001'").fetchone()[0]
        assert con.execute("SELECT count(*) FROM transactions WHERE clearing_fees < 0").fetchone()[0] == 0
    dropped = sum(f.clearing_fees for f in engine.run(42).ledger.upto(CLOCK, "5WT00001"))
    assert dropped > 100 and difference == pytest.approx(dropped, abs=0.05)
    assert reconciled.metadata["largest_difference"].value == pytest.approx(difference, abs=0.01)
