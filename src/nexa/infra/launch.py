"""What every backend shares: the launch request, its cost estimate and budget check, and its result.

``nexa infra launch`` builds a :class:`LaunchRequest`, refuses it before anything starts when the
estimate is over the budget, then hands it to the local or the SkyPilot backend; both answer with
the same :class:`LaunchResult` (the ``--json`` contract).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from nexa.infra.catalog import UnknownGpuError, offer, parse_gpus, providers
from nexa.infra.cost import PriceTable
from nexa.ledger import Lab

BACKENDS = ("local", "skypilot")


class LaunchRefused(ValueError):
    """The request cannot be launched as given (bad GPU/provider, budget, credentials); nothing was started."""


class LaunchRequest(BaseModel):
    """One launch: what to run (a pipeline or a training config), where, on what, for how much. The descriptions
    are ``nexa infra launch``'s help (its options are built from these fields)."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    lab: Lab
    target: Path
    target_kind: str  # "pipeline" | "config"
    backend: str = Field("local", description="local | skypilot")
    cluster: str | None = Field(None, description="Cluster name (default nexa-<file stem>).")
    durable: str | None = Field(None, description="Durable URL (s3://bucket/prefix, a path); default: the lab's.")
    gpus: str | None = Field(None, description="NAME:COUNT, e.g. H100:1 (skypilot).")
    provider: str | None = Field(None, description="lambda | runpod | coreweave | primeintellect | aws | gcp")
    spot: bool = Field(False, description="Use (and price) spot capacity.")
    max_price: float | None = Field(None, description="Refuse GPUs above this USD/hour.")
    idle_minutes: int = Field(10, ge=1, description="Autodown after this many idle minutes.")
    budget_usd: float | None = Field(None, ge=0, description="USD: refuse a launch estimated above it, stop a run that crosses it.")
    hours: float = Field(1.0, ge=0, description="Expected run time, for the estimate checked against --budget.")
    extra_env: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def for_target(cls, pipeline: Path | None, config: Path | None, lab_dir: Path | None = None, **settings: Any) -> "LaunchRequest":
        """A launch of exactly one of a pipeline YAML or a training config, in ``lab_dir`` (default: the lab holding
        the file)."""
        if (pipeline is None) == (config is None):
            raise LaunchRefused("pass exactly one of --pipeline FILE or --config FILE")
        target = pipeline or config
        return cls(lab=Lab.find(lab_dir or target.resolve().parent), target=target,
                   target_kind="pipeline" if pipeline else "config", **settings)

    @property
    def cluster_name(self) -> str:
        """``--cluster`` or ``nexa-<file stem>``, in the lowercase-and-dashes form clouds accept."""
        name = self.cluster or f"nexa-{self.target.stem}"
        return "".join(c if c.isalnum() or c == "-" else "-" for c in name.lower())

    @property
    def durable_url(self) -> str:
        return self.durable or self.lab.durable_url


@dataclass
class LaunchResult:
    cluster: str
    backend: str
    run_id: str | None
    status: str
    durable: str
    cost_usd: float
    teardown: bool

    def as_json(self) -> dict[str, Any]:
        """Exactly the documented keys: cluster, backend, run_id, status, durable, cost_usd, teardown."""
        return {"cluster": self.cluster, "backend": self.backend, "run_id": self.run_id, "status": self.status,
                "durable": self.durable, "cost_usd": round(self.cost_usd, 6), "teardown": self.teardown}


def validate_request(request: LaunchRequest) -> None:
    """Check the target, backend, GPUs, provider and price cap; raise :class:`LaunchRefused` naming the problem."""
    if request.backend not in BACKENDS:
        raise LaunchRefused(f"unknown backend {request.backend!r}; known backends: {', '.join(BACKENDS)}")
    if not request.target.is_file():
        raise LaunchRefused(f"{request.target} does not exist; pass a pipeline YAML (--pipeline) or a training config (--config)")
    if request.backend == "skypilot":
        if not request.gpus:
            raise LaunchRefused("--backend skypilot needs --gpus NAME:COUNT (e.g. H100:1)")
        if not request.provider:
            raise LaunchRefused(f"--backend skypilot needs --provider; known providers: {', '.join(providers())}")
    if request.gpus:
        try:
            gpu, _ = parse_gpus(request.gpus)
            if request.provider:
                offer(request.provider, gpu).price(request.spot)
        except UnknownGpuError as exc:
            raise LaunchRefused(str(exc)) from exc
    if request.max_price is not None and hourly_price(request) > request.max_price:
        raise LaunchRefused(f"{request.gpus} at {request.provider} costs ${hourly_price(request):.2f}/h, "
                            f"over --max-price ${request.max_price:.2f}/h")


def hourly_price(request: LaunchRequest) -> float:
    """USD per hour of the node: the catalog (or the lab's) price of its GPUs, spot or on-demand."""
    if request.backend == "local":
        return PriceTable.from_lab(request.lab).hourly("local", "cpu")
    gpu, count = parse_gpus(request.gpus or "")
    return PriceTable.from_lab(request.lab).hourly(request.provider or "", f"{gpu}x{count}", spot=request.spot)


def estimate_usd(request: LaunchRequest) -> float:
    """The expected bill: the node's hourly price times the expected hours (``--hours``)."""
    return hourly_price(request) * request.hours


def check_budget(request: LaunchRequest) -> float:
    """Refuse before launch when the estimate is over ``--budget``; returns the estimate."""
    estimate = estimate_usd(request)
    if request.budget_usd is not None and estimate > request.budget_usd:
        raise LaunchRefused(f"estimated cost ${estimate:.2f} ({request.hours:g} h at ${hourly_price(request):.2f}/h) "
                            f"is over the budget of ${request.budget_usd:.2f}; nothing was launched")
    return estimate


def launch_request(request: LaunchRequest, use_tailscale: bool = False) -> LaunchResult:
    """Launch a validated request on its backend: ``local`` as a process here, ``skypilot`` on a cloud node (opt-in:
    SkyPilot and credentials required; ``use_tailscale`` joins the tailnet with $TS_AUTHKEY)."""
    if request.backend == "skypilot":
        from nexa.infra.skypilot import launch_skypilot

        return launch_skypilot(request, use_tailscale)
    from nexa.infra.local import launch_local

    return launch_local(request)
