"""``variance-doctor`` / ``make doctor``: prove the set-up with the fewest read-only requests.

One line per step, on one screen::

    OK    oauth token     access token issued (expires in 900 s)        1 req   0.02 s
    OK    accounts        2 open accounts                               1 req   0.01 s
    ...

The steps, each at most one logical request (a paginated list follows its pages):

1. ``credentials``: the ``TASTYTRADE_*`` variables are set (live mode; no request).
2. ``oauth token``: one refresh-token grant (``POST /oauth/token``), never retried when rejected.
3. ``accounts``: ``GET /customers/me/accounts`` (open accounts are counted).
4. ``positions``: the positions of the *first* open account only (the pipeline reads every
   account; one is enough to prove the scope and the response shape).
5. ``market metrics``: one held underlying of that account (``SPY`` when nothing is held, or
   ``--symbol``).
6. ``yahoo chart``: the last 5 closed sessions of that symbol, one request, not retried (a 429
   must not be answered with more requests).
7. ``risk-free rate``: ``GET /margin-requirements-public-configuration``.
8. ``balances`` and ``margin report`` of that first open account (net liq, BP used, the groups).
9. What the token can reach, each one read-only line: ``quote token`` (``GET /api-quote-tokens``:
   the streaming grant; the token itself is never shown), ``market data`` (``GET
   /market-data/by-type`` for SPY and one option: funded accounts only; says whether the option's
   IV and Greeks are sent), ``futures bars`` (ES=F's ``currentTradingPeriod`` and its last two bar
   stamps: futures bars are calendar-day bars), ``earnings history`` (AAPL's last two historic
   items, which are dated by quarter end, and the metrics' report date and ``time-of-day``) and
   ``index dividend`` (SPX's ``dividend-yield``, or that SPY's is used).

Nothing is written to disk (no data directory, no raw files) and no secret is printed: every line
goes through ``TastytradeCredentials.redact``. Exit code 0 when every step is OK, 1 otherwise.
In simulator mode the same steps run against ``VARIANCE_SIMULATOR_URL``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo
from typing import Any, Callable, Mapping, Sequence, TextIO

from variance_pipeline.calendar import last_closed_session, sessions_back
from variance_pipeline.settings import ConfigurationError, Settings
from variance_pipeline.sources.http import RequestStats, RetryPolicy, SourceError
from variance_pipeline.instruments.symbology import root_symbol
from variance_pipeline.sources.tastytrade import (
    TastytradeAuthError,
    TastytradeClient,
    TastytradeCredentials,
)
from variance_pipeline.sources.yahoo import ChartError, YahooChartClient, yahoo_ticker

SECRET_VARIABLES = ("TASTYTRADE_CLIENT_SECRET", "TASTYTRADE_REFRESH_TOKEN")
FALLBACK_SYMBOL = "SPY"
CHART_SESSIONS = 5
START_SIMULATOR = "start it with `make dev` or `python -m variance_pipeline.simulator`"
# Few, short retries: a doctor must answer in seconds, and a rejected login is never retried anyway.
TASTYTRADE_POLICY = RetryPolicy(max_attempts=2, base_delay=0.5, max_delay=2.0, max_total_wait=5.0, timeout=15.0, max_retry_after=5.0)
# One attempt: after a Yahoo 429 every further request only prolongs the block.
YAHOO_POLICY = RetryPolicy(max_attempts=1, timeout=15.0, max_retry_after=0.0)


class StepFailed(Exception):
    """A step's failure, with the message the user should read."""


class Skipped(Exception):
    """A step that cannot run because an earlier one failed."""


@dataclass
class Step:
    name: str
    status: str  # OK, FAIL, SKIP
    summary: str
    requests: int
    seconds: float


class Doctor:
    def __init__(self, settings: Settings, env: Mapping[str, str], symbol: str | None, out: TextIO) -> None:
        self.settings = settings
        self.env = env
        self.symbol_override = symbol
        self.out = out
        self.stats = RequestStats()
        self.steps: list[Step] = []
        self.credentials: TastytradeCredentials | None = None
        self.client: TastytradeClient | None = None
        self.unreachable: set[str] = set()  # base URLs nothing answered at
        self.token_ok = False
        self.account: str | None = None
        self.held_option: str | None = None  # an equity option of that account, for the market-data line
        self.symbol = symbol or FALLBACK_SYMBOL
        self.symbol_reason = "--symbol" if symbol else "nothing held"

    # -- output ------------------------------------------------------------------------------

    def redact(self, text: str) -> str:
        """Every credential blanked, including a rotated refresh token and the access token."""
        secrets: list[str] = []
        if not self.live:  # the simulator's placeholder credentials are no secret
            return text
        if self.credentials is not None:
            text = self.credentials.redact(text)
        if self.client is not None:
            session = self.client.session  # the refresh token may have been rotated: redact the current one
            text = session.credentials.redact(text)
            if session.token:
                secrets.append(session.token)
        for name in (*SECRET_VARIABLES, "TASTYTRADE_CLIENT_ID"):
            value = (self.env.get(name) or "").strip()
            if len(value) >= 4:
                secrets.append(value)
        for secret in secrets:
            text = text.replace(secret, "<hidden>")
        return text

    def emit(self, line: str) -> None:
        print(self.redact(line), file=self.out, flush=True)

    def run_step(self, name: str, action: Callable[[], str]) -> bool:
        before = self.stats.snapshot()
        started = time.monotonic()
        try:
            summary, status = action(), "OK"
        except Skipped as exc:
            summary, status = str(exc), "SKIP"
        except StepFailed as exc:
            summary, status = str(exc), "FAIL"
        except Exception as exc:  # noqa: BLE001 - a doctor reports, it does not crash
            summary, status = f"unexpected {type(exc).__name__}: {exc}", "FAIL"
        spent = self.stats.since(before)
        step = Step(name, status, summary, spent.requests, time.monotonic() - started)
        self.steps.append(step)
        cost = f"{step.requests} req {step.seconds:6.2f} s" if step.requests else "0 req"
        self.emit(f"{status:<5} {name:<15} {summary}   [{cost}]")
        return status == "OK"

    # -- helpers -----------------------------------------------------------------------------

    def _failed(self, name: str) -> bool:
        return any(step.name == name and step.status == "FAIL" for step in self.steps)

    @property
    def live(self) -> bool:
        return self.settings.source == "live"

    @property
    def sandbox(self) -> bool:
        return "cert" in self.settings.tastytrade_api_url.lower()

    def _transport_failure(self, exc: SourceError, base_url: str) -> StepFailed | None:
        """A request that got no answer at all: say where, and how to fix it."""
        if exc.status is not None or "attempt(s)" not in str(exc):
            return None
        self.unreachable.add(base_url)
        if not self.live:
            return StepFailed(f"nothing answers at {base_url} (the simulator): {START_SIMULATOR}")
        return StepFailed(f"cannot reach {base_url}: {exc} (check the network and the URL variables)")

    def _need_tastytrade(self) -> TastytradeClient:
        if self.settings.tastytrade_api_url in self.unreachable:
            raise Skipped(f"{self.settings.tastytrade_api_url} did not answer")
        if self.client is None:
            raise Skipped("no Tastytrade credentials")
        return self.client

    def _need_token(self) -> TastytradeClient:
        client = self._need_tastytrade()
        if not self.token_ok:
            raise Skipped("needs an access token (the oauth step failed)")
        return client

    # -- steps -------------------------------------------------------------------------------

    def step_credentials(self) -> str:
        if not self.live:
            self.credentials = TastytradeCredentials("simulator", "simulator", "simulator")
            self.client = self._make_client()
            return "simulator mode: no credentials needed (the simulator accepts any)"
        missing = [name for name in SECRET_VARIABLES if not (self.env.get(name) or "").strip()]
        if missing:
            raise StepFailed(
                f"missing {', '.join(missing)}: export {' and '.join(SECRET_VARIABLES)} "
                "(and optionally TASTYTRADE_CLIENT_ID), or use VARIANCE_SOURCE=simulator"
            )
        client_id = (self.env.get("TASTYTRADE_CLIENT_ID") or "").strip() or None
        self.credentials = TastytradeCredentials(
            client_secret=self.env["TASTYTRADE_CLIENT_SECRET"].strip(),
            refresh_token=self.env["TASTYTRADE_REFRESH_TOKEN"].strip(),
            client_id=client_id,
        )
        self.client = self._make_client()
        return f"{' and '.join(SECRET_VARIABLES)} set, TASTYTRADE_CLIENT_ID {'set' if client_id else 'not set'}"

    def _make_client(self) -> TastytradeClient:
        assert self.credentials is not None
        return TastytradeClient(
            self.settings.tastytrade_api_url,
            self.credentials,
            policy=TASTYTRADE_POLICY,
            stats=self.stats,
            accept_version=(self.env.get("TASTYTRADE_ACCEPT_VERSION") or "").strip() or None,
        )

    def step_token(self) -> str:
        client = self._need_tastytrade()
        try:
            client._access_token()  # the one refresh-token grant; accounts etc. reuse the token
        except TastytradeAuthError as exc:
            raise StepFailed(self._auth_advice(exc)) from None
        except SourceError as exc:
            raise (self._transport_failure(exc, self.settings.tastytrade_api_url) or StepFailed(str(exc))) from None
        self.token_ok = True
        remaining = max(0.0, client.session.deadline - time.monotonic())
        return f"access token issued (valid about {remaining / 60:.0f} min more)"

    def _auth_advice(self, exc: TastytradeAuthError) -> str:
        text = str(exc)
        if "user-agent" in text.lower():
            return f"HTTP {exc.status}: the server wants a User-Agent header (this client sends one: is a proxy stripping it?)"
        if self.sandbox:
            return (
                f"HTTP {exc.status}: TASTYTRADE_API_URL={self.settings.tastytrade_api_url} is the sandbox (cert) "
                "and it rejected the token: a production refresh token does not work there. Unset "
                "TASTYTRADE_API_URL for production, or use the sandbox app's client secret and refresh token"
            )
        if not self.live:
            return (
                f"HTTP {exc.status}: the simulator rejected the credentials (started with "
                "--client-secret/--refresh-token? simulator mode sends 'simulator')"
            )
        if exc.status == 401 and "invalid_grant" in text:
            return (
                "HTTP 401 invalid_grant: the refresh token was revoked or has expired (or does not belong "
                "to this client secret). Create a new refresh token for the OAuth app and update "
                "TASTYTRADE_REFRESH_TOKEN / TASTYTRADE_CLIENT_SECRET. Do not retry in a loop: repeated "
                "failed logins get the IP blocked for hours"
            )
        return (
            f"HTTP {exc.status}: the OAuth server rejected the credentials{_detail(text)}; check "
            f"{' and '.join(SECRET_VARIABLES)} (and TASTYTRADE_CLIENT_ID). Not retried (IP blocks)"
        )

    def step_accounts(self) -> str:
        client = self._need_token()
        try:
            accounts = client.accounts().items
        except SourceError as exc:
            if exc.status == 401:
                where = " (sandbox URL: is this a sandbox token?)" if self.sandbox else ""
                raise StepFailed(
                    "401 on /customers/me/accounts even with a fresh access token: check the "
                    f"User-Agent / OAuth scopes (the app needs the read scope){where}"
                ) from None
            raise (self._transport_failure(exc, self.settings.tastytrade_api_url) or StepFailed(str(exc))) from None
        if accounts:
            self.account = str(accounts[0]["account-number"])
        noun = "account" if len(accounts) == 1 else "accounts"
        return f"{len(accounts)} open {noun}" + ("" if accounts else " (positions will be skipped)")

    def step_positions(self) -> str:
        client = self._need_token()
        if self.account is None:
            raise Skipped("no open account")
        try:
            items = client.positions(self.account).items
        except SourceError as exc:
            raise (self._transport_failure(exc, self.settings.tastytrade_api_url) or StepFailed(str(exc))) from None
        held: set[str] = set()
        for item in items:
            try:
                held.add(root_symbol(str(item.get("symbol", "")), str(item.get("instrument-type", "")), item.get("underlying-symbol")))
            except ValueError:
                continue
        held.discard("")
        options = sorted(str(i.get("symbol")) for i in items if i.get("instrument-type") == "Equity Option")
        self.held_option = options[0] if options else None
        if held and not self.symbol_override:
            # An equity or index first (the cheapest, most familiar check), a futures root otherwise.
            self.symbol, self.symbol_reason = sorted(held, key=lambda s: (s.startswith("/"), s))[0], "held"
        noun = "position" if len(items) == 1 else "positions"
        return f"{len(items)} {noun} in account {_masked(self.account)} (first open account), {len(held)} underlyings"

    def _account_call(self, call: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
        self._need_token()
        if self.account is None:
            raise Skipped("no open account")
        try:
            return call(self.account)
        except SourceError as exc:
            raise (self._transport_failure(exc, self.settings.tastytrade_api_url) or StepFailed(str(exc))) from None

    def step_balances(self) -> str:
        data = self._account_call(self._need_token().balances)
        net = _float(data.get("net-liquidating-value"))
        used = _float(data.get("used-derivative-buying-power"))
        if net is None:
            raise StepFailed("the balances have no net-liquidating-value")
        shown = f"net liq {net:,.2f} in account {_masked(self.account or '')}"
        if used is None:
            return shown + "; no used-derivative-buying-power (BP used % unknown)"
        return shown + f", BP used {used:,.2f} ({used / net:.1%} of net liq)" if net else shown

    def step_margin(self) -> str:
        report = self._account_call(self._need_token().margin_requirements)
        groups = [g for g in report.get("groups") or [] if isinstance(g, dict) and g]
        requirement = _float(report.get("maintenance-requirement"))
        total = f", maintenance requirement {requirement:,.2f}" if requirement is not None else ""
        return f"{len(groups)} underlying group{'' if len(groups) == 1 else 's'} in the margin report{total}"

    # -- what the token can reach (read-only; nothing of a secret is printed) ----------------------

    def _tastytrade_call(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except SourceError as exc:
            if exc.status in (401, 403):
                raise StepFailed(f"not granted to this token (HTTP {exc.status})") from None
            raise (self._transport_failure(exc, self.settings.tastytrade_api_url) or StepFailed(str(exc))) from None

    def step_quote_token(self) -> str:
        data = self._tastytrade_call(self._need_token().api_quote_tokens)
        url = str(data.get("dxlink-url") or data.get("websocket-url") or "?")
        return f"streaming token granted (level {data.get('level', '?')}, {url}); the token is not shown"

    def step_market_data(self) -> str:
        client = self._need_token()
        option = self.held_option or "SPY   260116C00700000"
        items = self._tastytrade_call(lambda: client.market_data({"equity": ["SPY"], "equity-option": [option]}))
        quoted = [i for i in items if i.get("symbol") == option]
        greeks = bool(quoted and all(quoted[0].get(k) not in (None, "") for k in ("volatility", "delta", "theta")))
        return (f"{len(items)} of 2 symbols quoted; the option's IV and Greeks "
                + ("are sent (stored beside the model's)" if greeks else "are not sent (the model's are used)"))

    def step_futures_bars(self, now: datetime) -> str:
        base = self.settings.yahoo_chart_url
        if base in self.unreachable:
            raise Skipped(f"{base} did not answer")
        if self._failed("yahoo chart"):
            raise Skipped("the Yahoo chart step failed: asking Yahoo again would only deepen a rate limit")
        sessions = sessions_back(last_closed_session(now), CHART_SESSIONS)
        with YahooChartClient(base, policy=YAHOO_POLICY, rate_per_second=0, jitter=0, stats=self.stats) as yahoo:
            try:
                fetched = yahoo.fetch("ES=F", sessions[0], sessions[-1], now=now)
            except ChartError as exc:
                raise StepFailed(str(exc)) from None
        period = (fetched.chart.meta.get("currentTradingPeriod") or {}).get("regular") or {}
        zone = ZoneInfo(str(fetched.chart.meta.get("exchangeTimezoneName") or "America/New_York"))

        def stamp(epoch: Any) -> str:
            return datetime.fromtimestamp(int(epoch), zone).strftime("%a %Y-%m-%d %H:%M %Z") if epoch else "?"

        bars = json.loads(fetched.raw).get("chart", {}).get("result", [{}])[0].get("timestamp") or []
        return (f"ES=F regular period {stamp(period.get('start'))} .. {stamp(period.get('end'))}; "
                f"last bars stamped {', '.join(stamp(t) for t in bars[-2:]) or 'none'}")

    def step_earnings_history(self) -> str:
        client = self._need_token()
        start = (self.settings.now() - timedelta(days=800)).date()
        items = self._tastytrade_call(lambda: client.earnings_reports("AAPL", start))
        metrics = self._tastytrade_call(lambda: client.market_metrics(["AAPL"])).items
        earnings = (metrics[0].get("earnings") or {}) if metrics else {}
        last = ", ".join(f"{i.get('occurred-date')} (eps {i.get('eps')})" for i in list(items)[-2:]) or "none"
        return (f"AAPL historic earnings, last two: {last}; metrics expected-report-date "
                f"{earnings.get('expected-report-date', '?')}, time-of-day {earnings.get('time-of-day', 'not sent')}")

    def step_index_dividend(self) -> str:
        metrics = self._tastytrade_call(lambda: self._need_token().market_metrics(["SPX"])).items
        value = metrics[0].get("dividend-yield") if metrics else None
        if value in (None, ""):
            return "SPX metrics carry no dividend-yield: index options use SPY's (dividend_yield_source proxy:SPY)"
        return f"SPX dividend-yield {_num(value)} (used for SPX options)"

    def step_metrics(self) -> str:
        client = self._need_token()
        try:
            fetched = client.market_metrics([self.symbol])
        except SourceError as exc:
            raise (self._transport_failure(exc, self.settings.tastytrade_api_url) or StepFailed(str(exc))) from None
        if fetched.missing or not fetched.items:
            raise StepFailed(f"the API returned no metrics for {self.symbol} (unknown symbol?)")
        item = fetched.items[0]
        iv = item.get("implied-volatility-index")
        rank = item.get("implied-volatility-index-rank")
        shown = f"{self.symbol} IV {_num(iv)}"
        if rank not in (None, ""):
            shown += f", IV rank {_num(rank)}"
        return f"{shown} ({self.symbol_reason})"

    def step_chart(self, now: datetime) -> str:
        base = self.settings.yahoo_chart_url
        if base in self.unreachable:
            raise Skipped(f"{base} did not answer")
        ticker = yahoo_ticker(self.symbol)
        sessions = sessions_back(last_closed_session(now), CHART_SESSIONS)
        with YahooChartClient(base, policy=YAHOO_POLICY, rate_per_second=0, jitter=0, stats=self.stats) as yahoo:
            try:
                fetched = yahoo.fetch(ticker, sessions[0], sessions[-1], now=now)
            except ChartError as exc:
                if exc.status == 429:
                    raise StepFailed(
                        f"Yahoo answered 429 Too Many Requests for {ticker}: it is rate-limiting this IP. "
                        "Wait (minutes, sometimes an hour) before running the pipeline, and lower "
                        f"VARIANCE_YAHOO_RATE (now {self.settings.yahoo_rate:g}/s, e.g. 0.5)"
                    ) from None
                failure = self._transport_failure(exc, base) if exc.status is None else None
                raise (failure or StepFailed(str(exc))) from None
        bars = fetched.chart.bars
        if bars.empty:
            raise StepFailed(f"{ticker}: no bars for {sessions[0]}..{sessions[-1]} {fetched.note}".strip())
        return f"{len(bars)} bars of {ticker}, last {bars['session_date'].iloc[-1]}"

    def step_rate(self) -> str:
        if self.settings.tastytrade_api_url in self.unreachable:
            raise Skipped(f"{self.settings.tastytrade_api_url} did not answer")
        try:
            if self.client is not None:
                data = self.client.margin_configuration()
            else:  # a public endpoint: it needs no credentials, so check it even without them
                with TastytradeClient(
                    self.settings.tastytrade_api_url, TastytradeCredentials("", ""), policy=TASTYTRADE_POLICY, stats=self.stats
                ) as public:
                    data = public.margin_configuration()
        except SourceError as exc:
            raise (self._transport_failure(exc, self.settings.tastytrade_api_url) or StepFailed(str(exc))) from None
        rate = data.get("risk-free-rate")
        if rate in (None, ""):
            raise StepFailed("the response has no risk-free-rate")
        try:
            return f"risk-free {float(rate):.4f}"
        except (TypeError, ValueError):
            raise StepFailed(f"risk-free-rate {rate!r} is not a number") from None

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> int:
        started = time.monotonic()
        now = self.settings.now()
        s = self.settings
        self.emit(
            f"variance-doctor: source={s.source}, Tastytrade {s.tastytrade_api_url}, Yahoo {s.yahoo_chart_url}"
        )
        try:
            self.run_step("credentials", self.step_credentials)
            self.run_step("oauth token", self.step_token)
            self.run_step("accounts", self.step_accounts)
            self.run_step("positions", self.step_positions)
            self.run_step("balances", self.step_balances)
            self.run_step("margin report", self.step_margin)
            self.run_step("market metrics", self.step_metrics)
            self.run_step("yahoo chart", lambda: self.step_chart(now))
            self.run_step("risk-free rate", self.step_rate)
            self.run_step("quote token", self.step_quote_token)
            self.run_step("market data", self.step_market_data)
            self.run_step("futures bars", lambda: self.step_futures_bars(now))
            self.run_step("earnings history", self.step_earnings_history)
            self.run_step("index dividend", self.step_index_dividend)
        finally:
            if self.client is not None:
                self.client.close()
        failed = [step.name for step in self.steps if step.status == "FAIL"]
        skipped = [step.name for step in self.steps if step.status == "SKIP"]
        total = f"{self.stats.requests} request{'' if self.stats.requests == 1 else 's'}, {time.monotonic() - started:.2f} s; nothing written"
        if failed:
            self.emit(f"FAILED: {', '.join(failed)}" + (f" (skipped: {', '.join(skipped)})" if skipped else "") + f" ({total})")
            return 1
        if skipped:
            self.emit(f"OK with skipped steps: {', '.join(skipped)} ({total})")
            return 0
        self.emit(f"all {len(self.steps)} checks OK ({total})")
        return 0


def _num(value: Any) -> str:
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return repr(value)


def _float(value: Any) -> float | None:
    try:
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return None


def _masked(account: str) -> str:
    """An account number shown by its last 4 characters only."""
    return account if len(account) <= 4 else "*" * (len(account) - 4) + account[-4:]


def _detail(text: str) -> str:
    start, end = text.find("("), text.find(")")
    return f" {text[start:end + 1]}" if 0 <= start < end else ""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="variance-doctor",
        description=(
            "Check the set-up with the fewest read-only requests (OAuth token, accounts, positions, "
            "market metrics, one Yahoo chart, the risk-free rate). Reads VARIANCE_SOURCE and the "
            "TASTYTRADE_* / YAHOO_CHART_URL / VARIANCE_SIMULATOR_URL variables; writes nothing."
        ),
    )
    parser.add_argument("--symbol", default=None, help=f"underlying to check (default: one held, else {FALLBACK_SYMBOL})")
    return parser


def main(argv: Sequence[str] | None = None, *, env: Mapping[str, str] | None = None, out: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    env = os.environ if env is None else env
    out = out or sys.stdout
    try:
        settings = Settings.from_env(env)
    except ConfigurationError as exc:
        print(f"FAIL  configuration   {exc}", file=out, flush=True)
        return 1
    symbol = args.symbol.strip().upper() if args.symbol and args.symbol.strip() else None
    return Doctor(settings, env, symbol, out).run()


if __name__ == "__main__":
    sys.exit(main())
