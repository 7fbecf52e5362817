"""Who is at the console: named accounts (a password hash or a token in the environment), the API token under
a typed name, or a user named by a trusted single-sign-on proxy; sessions in a signed cookie; CSRF tokens.

A session cookie is `base64url(JSON {u: user, r: role, c: csrf token, x: expiry}) "." base64url(HMAC-SHA256)`,
HttpOnly, SameSite=Lax, Secure when the request came over HTTPS. Nothing secret is in it: it is signed, not
encrypted. Every form carries the session's CSRF token; a POST without it is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from starlette.requests import Request

from hub.config import ConsoleSettings

Role = Literal["viewer", "operator"]
SESSION_COOKIE = "tickethub_session"
LOGIN_COOKIE = "tickethub_login"  # the login form's CSRF token, before there is a session
PBKDF2_ITERATIONS = 200_000
_DECOY = "pbkdf2_sha256$200000$decoy$" + "0" * 64  # checked against when a name has no password hash


@dataclass(frozen=True)
class Operator:
    name: str
    role: Role
    csrf: str
    via: Literal["session", "sso"] = "session"

    @property
    def may_act(self) -> bool:
        return self.role == "operator"


def hash_password(password: str, iterations: int = PBKDF2_ITERATIONS) -> str:
    salt = secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations)
    return f"pbkdf2_sha256${iterations}${salt}${digest.hex()}"


def password_matches(password: str, stored: str) -> bool:
    try:
        scheme, iterations, salt, expected = stored.split("$")
    except ValueError:
        return False
    if scheme != "pbkdf2_sha256" or not iterations.isdigit():
        return False
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), int(iterations))
    return hmac.compare_digest(digest.hex(), expected)


class Gate:
    """Checks credentials and reads and writes sessions, for one console."""

    def __init__(self, settings: ConsoleSettings, api_token: str, environ: Mapping[str, str]):
        self.settings = settings
        self.api_token = api_token
        self.environ = environ
        secret = environ.get(settings.session_secret_env)
        self.key = (secret.encode() if secret else
                    hmac.new(api_token.encode(), b"tickethub-console-session", hashlib.sha256).digest())

    # ---- logging in ----------------------------------------------------------------------------------

    def check(self, name: str, secret: str) -> Role | None:
        """The role `name` logs in with when `secret` is right, else None (same answer for every failure)."""
        name, ok_role = name.strip(), None
        if not name or not secret:
            return None
        user = self.settings.users.get(name)
        # the hash is worked out whether or not the name exists: the answer's time does not say which names do
        stored = user.password_hash if user is not None and user.password_hash else _DECOY
        if password_matches(secret, stored) and stored is not _DECOY:
            ok_role = user.role if user is not None else None
        if user is not None:
            token = self.environ.get(user.token_env) if user.token_env else None
            if token and hmac.compare_digest(secret.encode(), token.encode()):
                ok_role = user.role
        if ok_role is None and self.settings.api_token_login and hmac.compare_digest(secret.encode(),
                                                                                     self.api_token.encode()):
            ok_role = "operator"
        return ok_role

    # ---- sessions ------------------------------------------------------------------------------------

    def issue(self, name: str, role: Role) -> str:
        body = {"u": name, "r": role, "c": secrets.token_urlsafe(24),
                "x": int(time.time() + self.settings.session_hours * 3600)}
        payload = _b64(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode())
        return f"{payload}.{self._sign(payload)}"

    def operator(self, request: Request) -> Operator | None:
        """Who made the request: the trusted proxy's user, else the session cookie's, else None."""
        sso = self._sso(request)
        if sso is not None:
            return sso
        cookie = request.cookies.get(SESSION_COOKIE, "")
        payload, _, signature = cookie.partition(".")
        if not payload or not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except ValueError:
            return None
        if not isinstance(body, dict) or body.get("x", 0) < time.time() or body.get("r") not in ("viewer", "operator"):
            return None
        return Operator(str(body["u"]), body["r"], str(body["c"]))

    def _sso(self, request: Request) -> Operator | None:
        header = self.settings.trusted_user_header
        if not header or request.client is None or request.client.host not in self.settings.trusted_proxies:
            return None
        name = request.headers.get(header, "").strip()
        if not name:
            return None
        user = self.settings.users.get(name)
        role: Role = user.role if user is not None else self.settings.sso_role
        # a proxy-authenticated request has no session: its CSRF token is bound to the user, signed
        return Operator(name, role, self._sign("sso:" + name), via="sso")

    def secure(self, request: Request) -> bool:
        if request.url.scheme == "https":
            return True
        trusted = request.client is not None and request.client.host in self.settings.trusted_proxies
        return trusted and request.headers.get("x-forwarded-proto", "") == "https"

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self.key, payload.encode(), hashlib.sha256).digest())


def csrf_ok(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
