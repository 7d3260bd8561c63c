"""The ingress guard (API key, body-size cap) on a plain Starlette app, in-process."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from soaes.serve.guard import GuardMiddleware, key_digest


async def _echo(request):
    return JSONResponse({"got": len(await request.body())})


def _client(key: str | None, limit: int = 2048) -> TestClient:
    app = Starlette(
        routes=[
            Route("/v1/completions", _echo, methods=["POST", "OPTIONS"]),
            Route("/v1/models", _echo, methods=["GET"]),
        ]
    )
    app.add_middleware(
        GuardMiddleware, key_sha256=key_digest(key) if key else None, max_request_bytes=limit
    )
    return TestClient(app)


@pytest.mark.parametrize("auth", [None, "Bearer wrong", "secret", "Basic secret", "Bearer "])
def test_missing_or_wrong_key_is_401_with_openai_error(auth):
    headers = {"Authorization": auth} if auth else {}
    for r in (
        _client("secret").post("/v1/completions", json={}, headers=headers),
        _client("secret").get("/v1/models", headers=headers),
    ):
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        err = r.json()["error"]
        assert err["type"] == "authentication_error" and "API key" in err["message"]


def test_right_key_passes_and_no_key_configured_means_open():
    ok = _client("secret").post(
        "/v1/completions", json={"a": 1}, headers={"Authorization": "Bearer secret"}
    )
    assert ok.status_code == 200 and ok.json()["got"] == len(b'{"a":1}')
    assert _client(None).post("/v1/completions", json={"a": 1}).status_code == 200


def test_cors_preflight_needs_no_key():
    r = _client("secret").options("/v1/completions")
    assert r.status_code == 200


def test_oversized_or_unsized_body_is_rejected_before_the_app():
    c = _client(None, limit=2048)
    r = c.post("/v1/completions", content=b"x" * 4096)
    assert (
        r.status_code == 413 and "exceeds the limit of 2048 bytes" in r.json()["error"]["message"]
    )
    r = c.post("/v1/completions", content=iter([b"x" * 10]))  # chunked: no Content-Length
    assert r.status_code == 411
    assert c.post("/v1/completions", content=b"x" * 2048).status_code == 200
