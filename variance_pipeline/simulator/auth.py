"""Tastytrade OAuth as the pipeline sees it: refresh-token grant, short-lived bearer tokens.

Token lifetimes run on the real (monotonic) clock even when the simulator's market clock is
fixed, because expiry is about the client's wall-clock behaviour (refresh before 15 minutes,
refresh once on a 401), not about market data. ``DELETE /_sim/tokens`` revokes every access token
issued so far (a server that expires tokens early); ``GET /_sim/tokens`` lists them in the order
they were issued, with the refresh token now required (null: any is accepted).

With ``rotate`` each grant also answers a new ``refresh_token`` (OAuth 2 rotation, RFC 6749 6):
from then on only the newest one is accepted.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from typing import Any, Mapping
from urllib.parse import parse_qs

from variance_pipeline.simulator.formats import Reply, tt_error


class TokenStore:
    """Issues random access tokens and remembers when each expires."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._expiry: dict[str, float] = {}
        self._lock = threading.Lock()

    def issue(self) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._expiry[token] = time.monotonic() + self.ttl
        return token

    def valid(self, token: str) -> bool:
        with self._lock:
            expiry = self._expiry.get(token)
        return expiry is not None and time.monotonic() < expiry

    def issued(self) -> list[str]:
        """Every access token issued, oldest first (revoked and expired ones included)."""
        with self._lock:
            return list(self._expiry)

    def revoke_all(self) -> int:
        """Expire every token issued so far, at once; how many were still valid."""
        now = time.monotonic()
        with self._lock:
            live = sum(1 for expiry in self._expiry.values() if now < expiry)
            self._expiry = dict.fromkeys(self._expiry, now)
        return live


def _form(body: bytes, content_type: str) -> dict[str, Any]:
    """The grant as JSON (what the docs show) or form-encoded (what OAuth libraries send)."""
    text = body.decode("utf-8", errors="replace").strip()
    if "json" in content_type or text.startswith("{"):
        try:
            parsed = json.loads(text or "{}")
        except json.JSONDecodeError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {key: values[-1] for key, values in parse_qs(text).items()}


INVALID_GRANT = ("invalid_grant", "Grant is invalid, expired or revoked")
"""What the token endpoint says to credentials it does not accept (code, message)."""


class OAuth:
    """``POST /oauth/token``: any non-empty credentials, or exactly the configured ones."""

    def __init__(
        self, tokens: TokenStore, client_secret: str | None, refresh_token: str | None, rotate: bool = False
    ) -> None:
        self.tokens = tokens
        self.client_secret = client_secret
        self.refresh_token = refresh_token
        self.rotate = rotate

    def grant(self, body: bytes, headers: Mapping[str, str]) -> Reply:
        form = _form(body, headers.get("Content-Type", ""))
        if form.get("grant_type") != "refresh_token":
            return Reply(400, tt_error("unsupported_grant_type", "grant_type must be refresh_token"))
        refresh, secret = form.get("refresh_token"), form.get("client_secret")
        if not isinstance(refresh, str) or not refresh or not isinstance(secret, str) or not secret:
            return Reply(400, tt_error("invalid_request", "refresh_token and client_secret are required"))
        if (self.refresh_token is not None and refresh != self.refresh_token) or (
            self.client_secret is not None and secret != self.client_secret
        ):
            return Reply(401, tt_error(*INVALID_GRANT))
        body = {
            "access_token": self.tokens.issue(),
            "token_type": "Bearer",
            "expires_in": int(self.tokens.ttl),
            "id_token": secrets.token_urlsafe(48),
        }
        if self.rotate:
            self.refresh_token = body["refresh_token"] = secrets.token_urlsafe(32)
        return Reply(200, body)

    @staticmethod
    def check_user_agent(headers: Mapping[str, str]) -> Reply | None:
        """Tastytrade rejects every request without a User-Agent, login included."""
        if not (headers.get("User-Agent") or "").strip():
            return Reply(401, tt_error("unauthorized", "A User-Agent header is required"))
        return None

    def check_token(self, headers: Mapping[str, str]) -> Reply | None:
        """None when the bearer token is valid and unexpired, else the 401 the real API sends."""
        scheme, _, token = (headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return Reply(401, tt_error("unauthorized", "Authorization header with a Bearer token is required"))
        if not self.tokens.valid(token.strip()):
            return Reply(401, tt_error("token_invalid", "This token is invalid or has expired"))
        return None
