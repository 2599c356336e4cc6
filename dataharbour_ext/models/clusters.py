"""Clusters as the API shows them."""

from typing import Literal

from pydantic import BaseModel, Field


class ClusterInfo(BaseModel):
    """A Spark cluster jobs can be submitted to."""

    id: str
    name: str
    kind: Literal["local", "standalone", "external"] = Field(
        description="`local`: Spark inside each job's driver (local[N]); `standalone`: launched by this server; "
        "`external`: an existing master (spark://, k8s://, yarn) jobs are submitted to."
    )
    master_url: str
    ui_url: str | None = Field(None, description="The cluster's own web UI, when it has one.")
    state: Literal["starting", "running", "stopping", "stopped", "failed", "unknown"] = Field(
        description="`unknown`: an external master this server has not probed."
    )
    max_concurrent_jobs: int = Field(description="Jobs of this cluster that run at once; more wait queued.")
    running_jobs: int = Field(description="Jobs starting or running on it now.")
    queued_jobs: int


class ClusterList(BaseModel):
    clusters: list[ClusterInfo]
