"""Config blocks shared by several pipelines."""

from __future__ import annotations

from pydantic import Field

from soaes.config.base import StrictModel


class RayConfig(StrictModel):
    """How a pipeline reaches Ray."""

    address: str | None = Field(
        default=None,
        description="Cluster address; null uses RAY_ADDRESS, else starts an embedded loopback cluster.",
    )
    num_cpus: int | None = Field(
        default=None,
        ge=1,
        description="Logical CPUs of an embedded cluster (default max(4, 2×cores)).",
    )
    include_dashboard: bool = Field(
        default=False, description="Start the dashboard (embedded only)."
    )
