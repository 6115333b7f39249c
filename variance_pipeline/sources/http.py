"""HTTP plumbing shared by every source: retries, backoff, Retry-After, rate limit, counters.

Both providers punish impatience (Yahoo answers 429 for minutes, Tastytrade blocks IPs after
failed logins), so the policy is explicit and bounded: exponential backoff with full jitter, a
server's ``Retry-After`` honoured in full (up to ``max_retry_after``; a longer ask fails fast
with the wait the server asked for, never a shorter sleep and an early retry), a cap on attempts
*and* on total time spent waiting, and request spacing with optional jitter.

``RawResponse`` lives here because every source hands its untouched bodies to the same kind of
raw-landing callback (``on_raw``), called per response as soon as it arrived.
"""

from __future__ import annotations

import email.utils
import json
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

import httpx

from variance_pipeline import __version__

USER_AGENT = f"variance-pipeline/{__version__}"
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RawResponse:
    """One response body exactly as received, to land under ``raw/`` before anything parses it."""

    name: str  # a file name unique within one fetch, e.g. ``positions_5YZ55555.json``
    body: bytes


class SourceError(RuntimeError):
    """A request failed for good; the message names the URL path and what went wrong."""

    def __init__(self, message: str, *, status: int | None = None, path: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.path = path


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries: at most ``max_attempts`` tries and ``max_total_wait`` seconds asleep.

    ``max_delay`` caps our own backoff; a server's ``Retry-After`` is honoured in full up to
    ``max_retry_after`` seconds (and within what is left of ``max_total_wait``). A longer ask
    raises ``RetryAfterTooLong`` at once, saying how long the server asked to wait.
    """

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_total_wait: float = 120.0
    timeout: float = 20.0
    max_retry_after: float = 600.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2**attempt)]."""
        return rng.uniform(0.0, min(self.max_delay, self.base_delay * (2**attempt)))


class RetryAfterTooLong(SourceError):
    """The server asked (``Retry-After``) for a longer wait than the policy allows: not retried."""

    def __init__(self, message: str, *, status: int, path: str, retry_after: float) -> None:
        super().__init__(message, status=status, path=path)
        self.retry_after = retry_after


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: either delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


class RateLimiter:
    """At most ``rate`` request starts per second across threads (a simple spacing limiter).

    With ``jitter`` > 0 each gap is ``1/rate`` scaled by uniform(1, 1 + jitter), so requests
    never arrive on a fixed beat (what Yahoo tolerates: about one a second, with jitter). ``rng``,
    ``clock`` and ``sleep`` are injectable for tests.
    """

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        jitter: float = 0.0,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if jitter < 0:
            raise ValueError(f"jitter must be >= 0, got {jitter}")
        self.interval = 0.0 if rate <= 0 else 1.0 / rate
        self.jitter = jitter
        self._rng = rng or random.Random()
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._lock = threading.Lock()

    @property
    def mean_interval(self) -> float:
        """The average gap between request starts (jitter included)."""
        return self.interval * (1.0 + self.jitter / 2.0)

    def wait(self) -> None:
        if self.interval == 0.0:
            return
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            gap = self.interval * (self._rng.uniform(1.0, 1.0 + self.jitter) if self.jitter else 1.0)
            self._next = start + gap
        delay = start - now
        if delay > 0:
            self._sleep(delay)


@dataclass
class RequestStats:
    """What a run cost: reported as materialization metadata."""

    requests: int = 0
    retries: int = 0
    waited_seconds: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, status: int) -> None:
        with self._lock:
            self.requests += 1
            self.statuses[status] = self.statuses.get(status, 0) + 1

    def record_retry(self, delay: float) -> None:
        with self._lock:
            self.retries += 1
            self.waited_seconds += delay

    def snapshot(self) -> RequestStats:
        """A consistent copy, to measure a later ``since`` against."""
        with self._lock:
            return RequestStats(self.requests, self.retries, self.waited_seconds, dict(self.statuses))

    def since(self, earlier: RequestStats) -> RequestStats:
        """What was spent after ``earlier`` (a ``snapshot``): one run's share of a shared counter."""
        now = self.snapshot()
        return RequestStats(
            requests=now.requests - earlier.requests,
            retries=now.retries - earlier.retries,
            waited_seconds=now.waited_seconds - earlier.waited_seconds,
            statuses={
                status: count - earlier.statuses.get(status, 0)
                for status, count in now.statuses.items()
                if count != earlier.statuses.get(status, 0)
            },
        )

    def as_metadata(self) -> dict[str, int | float]:
        return {
            "requests": self.requests,
            "retries": self.retries,
            "retry_wait_seconds": round(self.waited_seconds, 3),
        }


def json_object(body: bytes) -> dict[str, Any]:
    """``body`` as a JSON object, else ``ValueError`` saying why (truncated bodies and HTML pages happen)."""
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"response is not valid JSON (malformed or truncated JSON, {len(body)} bytes: {exc})"
        ) from exc
    if not isinstance(payload, dict):
        raise ValueError(f"expected a JSON object, got {type(payload).__name__}")
    return payload


def make_client(base_url: str, policy: RetryPolicy, headers: Mapping[str, str] | None = None) -> httpx.Client:
    """An httpx client with explicit timeouts and our User-Agent (Tastytrade 401s without one)."""
    return httpx.Client(
        base_url=base_url,
        timeout=httpx.Timeout(policy.timeout, connect=min(policy.timeout, 10.0)),
        headers={"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})},
        follow_redirects=False,
    )


def send_with_retry(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    policy: RetryPolicy,
    stats: RequestStats,
    limiter: RateLimiter | None = None,
    rng: random.Random | None = None,
    sleep: Callable[[float], None] = time.sleep,
    **kwargs: object,
) -> httpx.Response:
    """Send one logical request, retrying 429/5xx and transport errors within ``policy``.

    Returns the final response (which may still be an error status that is not retryable, or the
    last retryable one when attempts or the wait budget ran out); raises ``SourceError`` only when
    no response at all was obtained (timeouts, refused connections).
    """
    rng = rng or random.Random()
    waited = 0.0
    last_error: Exception | None = None
    response: httpx.Response | None = None
    for attempt in range(policy.max_attempts):
        if limiter is not None:
            limiter.wait()
        try:
            response = client.request(method, url, **kwargs)  # type: ignore[arg-type]
        except httpx.TransportError as exc:
            last_error, response = exc, None
            stats.record(0)
        else:
            stats.record(response.status_code)
            if response.status_code not in RETRYABLE_STATUS:
                return response
        if attempt + 1 >= policy.max_attempts:
            break
        delay = policy.backoff(attempt, rng)
        if response is not None:
            hinted = parse_retry_after(response.headers.get("Retry-After"))
            if hinted is not None:
                # In full, or not at all: a shorter sleep would only retry too early.
                limit = min(policy.max_retry_after, policy.max_total_wait - waited)
                if hinted > limit:
                    path = httpx.URL(url).path
                    raise RetryAfterTooLong(
                        f"{method} {path} answered HTTP {response.status_code} and the server asked to "
                        f"wait {_duration(hinted)} (Retry-After) before retrying, more than the "
                        f"{_duration(max(limit, 0.0))} this retry policy allows (max_retry_after="
                        f"{policy.max_retry_after:g} s, max_total_wait={policy.max_total_wait:g} s, "
                        f"{waited:g} s already waited); not retried early. Try again after that wait.",
                        status=response.status_code,
                        path=path,
                        retry_after=hinted,
                    )
                delay = hinted
        if waited + delay > policy.max_total_wait:
            break
        stats.record_retry(delay)
        waited += delay
        sleep(delay)
    if response is not None:
        return response
    path = httpx.URL(url).path
    raise SourceError(
        f"{method} {path} failed after {policy.max_attempts} attempt(s): {type(last_error).__name__}: {last_error}",
        path=path,
    )


def _duration(seconds: float) -> str:
    """``45 s``, ``12.5 min``: a wait as a person reads it."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
