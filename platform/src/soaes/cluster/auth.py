"""Ray's token authentication as seen by a client of a cluster.

Clusters started with ``ray start`` (ours included) require a bearer token: the CLI reads it
when ``RAY_AUTH_MODE=token``; HTTP calls to the dashboard's ``/api/*`` must carry
``Authorization: Bearer <token>``. Ray looks for the token in ``RAY_AUTH_TOKEN``, then the
file named by ``RAY_AUTH_TOKEN_PATH``, then ``~/.ray/auth_token``; so do we.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def token_path() -> Path:
    """The token file Ray reads (``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``)."""
    custom = os.environ.get("RAY_AUTH_TOKEN_PATH")
    return Path(custom) if custom else Path.home() / ".ray" / "auth_token"


def auth_token() -> str | None:
    """The cluster token, or None when there is none (a cluster without auth)."""
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if token:
        return token
    path = token_path()
    if path.is_file():
        return path.read_text(encoding="utf-8").strip() or None
    return None


def auth_headers() -> dict[str, str]:
    """``{"Authorization": "Bearer …"}`` when a token exists, else ``{}``."""
    token = auth_token()
    return {"Authorization": f"Bearer {token}"} if token else {}


def ensure_token(ray_bin: str) -> Path | None:
    """Create the default token with Ray's own command when none exists yet.

    Returns:
        The token file, or None when the token comes from ``RAY_AUTH_TOKEN``.
    """
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return None
    if auth_token() is None:
        if os.environ.get("RAY_AUTH_TOKEN_PATH"):
            raise FileNotFoundError(
                f"RAY_AUTH_TOKEN_PATH={token_path()}: no token there; write one or unset it"
            )
        # The command prints the token: keep it out of terminals and logs.
        subprocess.run(
            [ray_bin, "get-auth-token", "--generate"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    return token_path()
