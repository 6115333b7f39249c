"""The evening report: one page that answers a premium seller's evening questions, in order.

Is the book sized right (the headline: net liq, BP used against its VIX band, theta, beta-weighted
delta, vega)? What needs managing tonight? Where is the risk? What will the underlyings do this
week, and who reports earnings? What is worth selling next? How did closed trades go? Can these
numbers be trusted (data health)?

Everything comes from the warehouse's views (``account_summary``, ``manage_tonight``,
``portfolio_risk``, ``expected_move``, ``next_earnings``, ``vol_dashboard``) through a read-only
connection, so the page shows what SQL shows: the book and market sections in ``sections.py``,
the candidates in ``screen.py``, the journal and data health in their own modules; this one
assembles them, renders and writes. Each section carries ``notes``: the sentence a
trader reads when something is missing (a first evening, no positions, no account data, a stale
account snapshot) instead of an error or an empty box. ``render`` turns the context into one
self-contained HTML file (jinja2, autoescaped); ``write_report`` lands it atomically as
``reports/evening-YYYY-MM-DD.html`` and ``reports/latest.html``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from functools import lru_cache
from pathlib import Path

import duckdb
import jinja2

from variance_pipeline.lake.atomic import write_bytes_atomic
from variance_pipeline.lake.layout import Lake
from variance_pipeline.reports import svg
from variance_pipeline.reports.formatting import FILTERS, day, number
from variance_pipeline.reports.health import Health, RunFacts, data_health
from variance_pipeline.reports.journal import Journal, closed_trades
from variance_pipeline.reports.mail import report_subject
from variance_pipeline.reports.screen import Candidates, Screen, screen_candidates
from variance_pipeline.reports.sections import Headline, Manage, Moves, Risk, headline, manage, moves, query_rows, risk
from variance_pipeline.warehouse.connection import warehouse_connection

REQUIRED_RELATIONS = (
    "load_log", "universe", "positions", "balances", "margin_requirements", "bp_guideline", "book_settings",
    "account_summary", "manage_tonight", "book_groups", "portfolio_risk", "expected_move", "next_earnings",
    "vol_dashboard",
)
SECTIONS = (
    ("headline", "Tonight"),
    ("manage", "Manage tonight"),
    ("risk", "Risk by underlying"),
    ("moves", "Expected moves & earnings"),
    ("candidates", "Candidates"),
    ("journal", "Journal"),
    ("health", "Data health"),
)


class ReportError(RuntimeError):
    """The report cannot be built from this warehouse; the message says why and what to do."""


# -- the whole page -----------------------------------------------------------------------------


@dataclass
class EveningContext:
    evening: date | None
    generated_at: datetime
    source: str | None
    warehouse_path: str
    market_as_of: date | None = None
    positions_as_of: date | None = None
    headline: Headline = field(default_factory=Headline)
    manage: Manage = field(default_factory=Manage)
    risk: Risk = field(default_factory=Risk)
    moves: Moves = field(default_factory=Moves)
    candidates: Candidates = field(default_factory=Candidates)
    journal: Journal = field(default_factory=Journal)
    health: Health = field(default_factory=Health)
    screen: Screen = field(default_factory=Screen)
    notes: list[str] = field(default_factory=list)
    sections: tuple[tuple[str, str], ...] = SECTIONS


def _check_relations(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    present = {row[0] for row in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'").fetchall()}
    missing = [name for name in REQUIRED_RELATIONS if name not in present]
    if missing:
        raise ReportError(
            f"the warehouse {path} lacks {', '.join(missing)}: it was created by an older version or never loaded. "
            "Run the pipeline once (a load migrates it), then build the report again."
        )


def evening_context(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    *,
    screen: Screen | None = None,
    facts: RunFacts | None = None,
    clock: datetime | None = None,
    journal_days: int = 30,
) -> EveningContext:
    """Every section of the page from the warehouse behind ``con`` (read-only is enough)."""
    screen = screen or Screen()
    _check_relations(con, lake.warehouse_path)
    evening = con.execute("SELECT max(session_date) FROM load_log").fetchone()[0]
    marker = lake.root / Lake.SOURCE_MARKER
    context = EveningContext(
        evening=evening,
        generated_at=(clock or datetime.now(timezone.utc)).astimezone(timezone.utc),
        source=marker.read_text().strip() if marker.exists() else None,
        warehouse_path=str(lake.warehouse_path),
        screen=screen,
    )
    context.health = data_health(con, lake, evening, facts)
    if evening is None:
        context.notes.append(
            "The warehouse holds no session yet: no run has loaded anything. Run the pipeline (make demo, or the "
            "evening schedule) and the report fills in."
        )
        nothing = "Nothing to show yet: the warehouse holds no session."
        for notes in (context.headline.notes, context.manage.notes, context.risk.notes, context.moves.notes,
                      context.moves.earnings_notes, context.candidates.notes):
            notes.append(nothing)
        context.journal = closed_trades(con, context.generated_at.date(), journal_days)
        return context
    context.market_as_of = con.execute("SELECT max(session_date) FROM realized_volatility").fetchone()[0]
    context.positions_as_of = con.execute("SELECT max(as_of_date) FROM positions").fetchone()[0]
    context.headline = headline(con, evening)
    context.manage = manage(con)
    # next_earnings is read once (it is the costliest view) for the risk table and the calendar.
    earnings = {row["symbol"]: row for row in query_rows(
        con, "SELECT * FROM next_earnings WHERE earnings_date >= ?", [evening])}
    context.risk = risk(con, evening, earnings)
    context.moves = moves(con, evening, screen.dte_window, earnings)
    context.candidates = screen_candidates(con, screen, evening)
    context.journal = closed_trades(con, evening, journal_days)
    if context.positions_as_of is not None and context.positions_as_of < evening:
        context.manage.notes.insert(0, f"The latest positions snapshot is from {day(context.positions_as_of)}, "
                                       f"not tonight ({day(evening)}): positions cannot be fetched for a past evening.")
    return context


def headline_metrics(context: EveningContext) -> dict[str, float | int | str]:
    """The headline numbers as plain values (the asset's metadata, the mail's subject line)."""
    values = context.headline.values
    metrics: dict[str, float | int | str] = {}
    if context.evening is not None:
        metrics["evening"] = context.evening.isoformat()
    for key in ("net_liquidating_value", "net_liq_change", "bp_used_pct", "bp_guideline_max_pct", "theta_per_day",
                "beta_weighted_delta", "vega_per_vol_point"):
        value = number(values.get(key))
        if value is not None:
            metrics[key] = round(value, 6)
    metrics["groups_to_manage"] = len(context.manage.rows)
    metrics["candidates"] = len(context.candidates.passed) + context.candidates.more
    metrics["data_health_problems"] = context.health.problems
    return metrics


@lru_cache(maxsize=4)
def _environment(bytecode_dir: str | None = None) -> jinja2.Environment:
    """The template environment, once per process. With ``bytecode_dir`` the compiled template is kept
    there (Jinja checks it against the template's source), so an evening's run does not spend a
    tenth of a second compiling the same template again."""
    cache = None
    if bytecode_dir is not None:
        Path(bytecode_dir).mkdir(parents=True, exist_ok=True)
        cache = jinja2.FileSystemBytecodeCache(bytecode_dir)
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("variance_pipeline.reports", "templates"),
        bytecode_cache=cache,
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(FILTERS)
    env.globals.update(share_width=svg.share_width, diverging=svg.diverging, number=number)
    return env


def render(context: EveningContext, bytecode_dir: Path | None = None) -> str:
    """The page: one self-contained HTML document (inline CSS and SVG, no script, no external request)."""
    env = _environment(str(bytecode_dir) if bytecode_dir is not None else None)
    return env.get_template("evening.html.j2").render(c=context)


@dataclass(frozen=True)
class ReportFiles:
    dated: Path
    latest: Path


def write_report(html: str, reports_dir: Path, evening: date) -> ReportFiles:
    """``evening-YYYY-MM-DD.html`` and ``latest.html``, each written atomically (never half a page)."""
    payload = html.encode("utf-8")
    dated = write_bytes_atomic(reports_dir / f"evening-{evening.isoformat()}.html", payload)
    latest = write_bytes_atomic(reports_dir / "latest.html", payload)
    return ReportFiles(dated, latest)


@dataclass(frozen=True)
class BuiltReport:
    files: ReportFiles
    context: EveningContext
    html: str
    seconds: float

    @property
    def metrics(self) -> dict[str, float | int | str]:
        return headline_metrics(self.context)

    @property
    def subject(self) -> str:
        return report_subject(self.metrics)


def build_report(
    lake: Lake,
    *,
    screen: Screen | None = None,
    facts: RunFacts | None = None,
    clock: datetime | None = None,
    fallback_evening: date | None = None,
    wait_seconds: float = 30.0,
) -> BuiltReport:
    """Read the warehouse (read-only), render, and write both files; the page's evening is the newest
    session the warehouse holds (``fallback_evening`` names the file of an empty warehouse)."""
    started = time.perf_counter()
    path = lake.warehouse_path
    if not path.exists():
        raise ReportError(f"no warehouse at {path}: run the pipeline first (make demo, or a scheduled run)")
    with warehouse_connection(path, read_only=True, wait_seconds=wait_seconds) as con:
        context = evening_context(con, lake, screen=screen, facts=facts, clock=clock)
    html = render(context, lake.root / "cache" / "report-templates")
    evening = context.evening or fallback_evening or context.generated_at.date()
    files = write_report(html, lake.reports_dir, evening)
    return BuiltReport(files, context, html, time.perf_counter() - started)
