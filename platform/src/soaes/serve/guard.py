"""What ``ray.serve.llm``'s OpenAI ingress lacks: an API-key check and a request-size cap.

Everything else about bad input (malformed JSON, unknown model, over-long prompt,
out-of-range ``max_tokens``) is already answered with a 4xx by ray.serve.llm and vLLM;
tests/serve pins that behaviour down instead of re-implementing it here.

A pure ASGI middleware (not Starlette's BaseHTTPMiddleware) so streaming responses pass
through untouched.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any


def key_digest(key: str) -> str:
    """SHA-256 hex digest of an API key: only the digest travels into the replicas, so the
    key never appears in the deployment config, the dashboard or the logs."""
    return hashlib.sha256(key.encode()).hexdigest()


def error_body(status: int, message: str, kind: str) -> bytes:
    """An OpenAI-style error body, as the openai client parses it."""
    return json.dumps(
        {"error": {"message": message, "type": kind, "param": None, "code": status}}
    ).encode()


class GuardMiddleware:
    """Reject unauthenticated (401) and oversized (413/411) HTTP requests before routing.

    Args:
        app: the wrapped ASGI app.
        key_sha256: digest of the API key; None disables the check.
        max_request_bytes: largest accepted request body.
    """

    def __init__(self, app: Any, key_sha256: str | None, max_request_bytes: int) -> None:
        self.app = app
        self.key_sha256 = key_sha256
        self.max_request_bytes = max_request_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])
        }
        problem = self._problem(scope["method"], headers)
        if problem is None:
            return await self.app(scope, receive, send)
        status, message, kind = problem
        extra = [(b"www-authenticate", b"Bearer")] if status == 401 else []
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), *extra],
            }
        )
        await send({"type": "http.response.body", "body": error_body(status, message, kind)})

    def _problem(self, method: str, headers: dict[str, str]) -> tuple[int, str, str] | None:
        # CORS preflights carry no credentials by design; they reach no model either.
        if method != "OPTIONS" and self.key_sha256 is not None and not self._authorized(headers):
            return (
                401,
                "missing or invalid API key: send 'Authorization: Bearer <key>'",
                "authentication_error",
            )
        if method in ("POST", "PUT", "PATCH"):
            length = headers.get("content-length")
            if length is None:
                return 411, "a Content-Length header is required", "invalid_request_error"
            if not length.isdigit() or int(length) > self.max_request_bytes:
                return (
                    413,
                    (
                        f"request body of {length} bytes exceeds the limit of "
                        f"{self.max_request_bytes} bytes"
                    ),
                    "invalid_request_error",
                )
        return None

    def _authorized(self, headers: dict[str, str]) -> bool:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        return hmac.compare_digest(key_digest(token.strip()), self.key_sha256)
