"""Bearer tokens for the local server: token files, rights, callers, and the per-caller
rate limit on corrections.

A token file (``--auth_token_file``, ``--feedback_token_file``; the same format as the
TF Serving proxy's map) holds one token per line, ``TOKEN [CALLER]``: an optional caller
name after whitespace, ``#`` comment lines and blank lines ignored, several lines for
several valid tokens (rotation). A file holding just the token is valid. A token without
a name is known by its place, ``<flag> line <N>`` (e.g. ``--feedback_token_file line 2``),
the same across restarts while the file is unchanged: nothing derived from its value
reaches the metrics or the feedback store, where it could be guessed offline.
"""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import math
import re
import threading
import time
from typing import Callable, Dict, Optional

import grpc

from serving.errors import ServingError

PREDICT, FEEDBACK = "predict", "feedback"  # rights: inference (and metrics); corrections
ANONYMOUS = "anonymous"  # the caller when no token is needed
RATE_LIMITED_METRIC = "feedback_requests_rate_limited_total"
BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750's b64token


def read_token_file(path: str, flag: str) -> Dict[str, str]:
    """``{token: caller}`` of a token file; errors name ``flag`` and the file (and line)."""
    try:
        with open(path, encoding="utf-8-sig") as f:  # a BOM (Windows editors) is no token
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{flag} {path}: cannot read it: {error}") from None
    tokens: Dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        token, *name = line.split(None, 1)
        if not BEARER_TOKEN.fullmatch(token):  # no transport would carry it intact
            raise ValueError(f"{flag} {path} line {number}: the token holds characters a "
                             f"bearer token cannot (RFC 6750: ASCII letters, digits and "
                             f"-._~+/ then any '=')")
        if not name and token in tokens:  # an unnamed repeat: the first place names it
            continue
        caller = name[0].strip() if name else f"{flag} line {number}"
        if tokens.get(token, caller) != caller:
            raise ValueError(f"{flag} {path} line {number}: a token given twice with "
                             f"different callers")
        tokens[token] = caller
    if not tokens:
        raise ValueError(f"{flag} {path} holds no token (one 'TOKEN [CALLER]' per line)")
    return tokens


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


@dataclasses.dataclass(frozen=True)
class _Token:
    digest: bytes
    caller: str
    rights: frozenset


class Authenticator:
    """Who may do what. ``predict``: the tokens of ``--auth_token_file`` (None: inference
    is open); ``feedback``: those of ``--feedback_token_file``, good for corrections only
    (None: corrections take the prediction tokens, or are open when there are none). A
    token in both files is refused."""

    def __init__(self, predict: Optional[Dict[str, str]] = None,
                 feedback: Optional[Dict[str, str]] = None):
        shared = set(predict or ()) & set(feedback or ())
        if shared:
            raise ValueError(f"--feedback_token_file and --auth_token_file share "
                             f"{len(shared)} token(s) (caller "
                             f"{(feedback or {})[min(shared)]}): give feedback its own")
        self.open = {PREDICT: predict is None, FEEDBACK: predict is None and feedback is None}
        self._feedback_flag = ("--auth_token_file" if feedback is None
                               else "--feedback_token_file")
        predict_rights = frozenset([PREDICT] + ([FEEDBACK] if feedback is None else []))
        self._tokens = [_Token(_digest(t), c, predict_rights) for t, c in (predict or {}).items()]
        self._tokens += [_Token(_digest(t), c, frozenset([FEEDBACK]))
                         for t, c in (feedback or {}).items()]

    @property
    def enabled(self) -> bool:
        """Whether any request may need a token (CORS then allows the header)."""
        return bool(self._tokens)

    def caller(self, authorization: str, right: str) -> str:
        """The caller named by an ``Authorization`` value (``Bearer <token>``) that holds
        ``right``. UNAUTHENTICATED for no or an unknown token, PERMISSION_DENIED for a
        token without the right. Every configured token is compared, in constant time."""
        if self.open[right]:
            return ANONYMOUS
        scheme, _, supplied = authorization.strip().partition(" ")
        digest = _digest(supplied.strip() if scheme.lower() == "bearer" else "")
        found = None
        for token in self._tokens:  # no early exit: the time does not depend on which
            if hmac.compare_digest(digest, token.digest):
                found = token
        if found is None:
            raise ServingError(grpc.StatusCode.UNAUTHENTICATED,
                               "missing or invalid bearer token")
        if right not in found.rights:
            flag = "--auth_token_file" if right == PREDICT else self._feedback_flag
            what = "predictions" if right == PREDICT else "feedback (corrections)"
            raise ServingError(grpc.StatusCode.PERMISSION_DENIED,
                               f"this token may not send {what}: it is not in the "
                               f"server's {flag}")
        return found.caller


class RateLimited(ServingError):
    """Too many corrections from one caller; ``retry_after`` whole seconds (None: the
    request can never pass, it is larger than the limit)."""

    def __init__(self, message: str, retry_after: Optional[int]):
        super().__init__(grpc.StatusCode.RESOURCE_EXHAUSTED, message)
        self.retry_after = retry_after


class RateLimiter:
    """``per_minute`` corrections per caller (0: no limit): a token bucket per caller
    holding up to a minute's worth, refilled continuously. Refusals are counted in
    ``feedback_requests_rate_limited_total{caller}`` when a ``registry`` is given."""

    def __init__(self, per_minute: int, registry=None,
                 clock: Callable[[], float] = time.monotonic):
        if per_minute < 0:
            raise ValueError(f"--feedback_max_corrections_per_minute must be >= 0, got "
                             f"{per_minute}")
        self.per_minute, self._clock = per_minute, clock
        self._buckets: Dict[str, tuple] = {}  # caller: (corrections left, at time)
        self._lock = threading.Lock()
        self._refused = None
        if registry is not None:
            import prometheus_client as prom
            self._refused = prom.Counter(
                RATE_LIMITED_METRIC.removesuffix("_total"),
                "POST /v1/feedback refused by --feedback_max_corrections_per_minute.",
                ["caller"], registry=registry)

    def take(self, caller: str, count: int) -> None:
        """Spends ``count`` of the caller's corrections, or raises ``RateLimited``."""
        if not self.per_minute:
            return
        rate = self.per_minute / 60.0
        with self._lock:
            now = self._clock()
            left, then = self._buckets.get(caller, (float(self.per_minute), now))
            left = min(float(self.per_minute), left + (now - then) * rate)
            if count <= left:
                self._buckets[caller] = (left - count, now)
                return
            self._buckets[caller] = (left, now)
        if self._refused is not None:
            self._refused.labels(caller).inc()
        if count > self.per_minute:
            raise RateLimited(f"{count} corrections in one request, more than "
                              f"--feedback_max_corrections_per_minute={self.per_minute}: "
                              f"send fewer per request", None)
        wait = max(1, math.ceil((count - left) / rate))
        raise RateLimited(f"too many corrections from caller '{caller}' (at most "
                          f"{self.per_minute} a minute, --feedback_max_corrections_per_"
                          f"minute); retry in {wait} s", wait)

    def give_back(self, caller: str, count: int) -> None:
        """Returns corrections a refused request did not store."""
        if not self.per_minute:
            return
        with self._lock:
            if caller in self._buckets:
                left, then = self._buckets[caller]
                self._buckets[caller] = (min(float(self.per_minute), left + count), then)


def check_exposure(host: str, listening: bool, token_files: bool, tls: bool,
                   allow_plaintext_token: bool, feedback_dir: bool,
                   feedback_tokens: bool) -> None:
    """Refuses, before anything loads, a server that other machines can reach with a
    token but no TLS, or with feedback open to them."""
    from serving.tls import is_loopback

    if not listening or is_loopback(host):
        return
    host = host or "'' (every interface)"
    if token_files and not tls and not allow_plaintext_token:
        raise ValueError(f"a token file on --host {host} without --ssl_config_file: tokens "
                         f"would travel in clear text; add --ssl_config_file, bind a "
                         f"loopback --host, or pass --allow_plaintext_token when a proxy "
                         f"or mesh in the pod terminates TLS")
    if feedback_dir and not feedback_tokens:
        raise ValueError(f"--feedback_dir on --host {host} without --feedback_token_file: "
                         f"anyone reaching the port could send corrections that feed "
                         f"retraining; add --feedback_token_file or bind a loopback --host")
