"""Strict, frozen pydantic base shared by every soaes config model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Base for every config: unknown keys are rejected and instances are immutable.

    Configs are frozen on purpose: a config is resolved once (YAML + overrides), validated,
    hashed and written next to the outputs; nothing may mutate it afterwards.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
