"""HTTP plumbing shared by every source: retries, backoff, Retry-After, rate limit, counters.

Both providers punish impatience (Yahoo answers 429 for minutes, Tastytrade blocks IPs after
failed logins), so the policy is explicit and bounded: exponential backoff with full jitter, a
server's ``Retry-After`` honoured, a cap on attempts *and* on total time spent waiting.
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


class SourceError(RuntimeError):
    """A request failed for good; the message names the URL path and what went wrong."""

    def __init__(self, message: str, *, status: int | None = None, path: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.path = path


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries: at most ``max_attempts`` tries and ``max_total_wait`` seconds asleep."""

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_total_wait: float = 120.0
    timeout: float = 20.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2**attempt)]."""
        return rng.uniform(0.0, min(self.max_delay, self.base_delay * (2**attempt)))


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
    """At most ``rate`` request starts per second across threads (a simple spacing limiter)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 0.0 if rate <= 0 else 1.0 / rate
        self._clock = clock
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if self.interval == 0.0:
            return
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + self.interval
        delay = start - now
        if delay > 0:
            time.sleep(delay)


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
                delay = min(hinted, policy.max_delay)
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
