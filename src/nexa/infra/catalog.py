"""The GPU catalog: which providers sell which GPUs, at what on-demand and spot price per GPU-hour.

The source is the catalog file seeded in this package (``catalog.csv``; ``nexa.yaml`` ``prices`` override
it), read in-process so cost estimates, budgets and ``--gpus`` validation cost no SkyPilot start-up and work
offline. SkyPilot runs in its own environment (``nexa.infra.sky_process``); its dry-run check
(``validate_with_skypilot(..., check_catalog=True)``) reports the instance types and $/h of SkyPilot's own
catalog for a task, and the same rows seed SkyPilot's catalog cache where it cannot fetch one (offline tests).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

CATALOG_FILE = Path(__file__).with_name("catalog.csv")
# Our provider names -> SkyPilot's cloud names (CoreWeave is reached through SkyPilot's Kubernetes cloud).
SKY_CLOUDS: dict[str, str] = {"lambda": "lambda", "runpod": "runpod", "coreweave": "kubernetes",
                              "primeintellect": "primeintellect", "aws": "aws", "gcp": "gcp"}


@dataclass(frozen=True)
class Offer:
    """One GPU type at one provider: per-GPU hourly prices (``spot`` None where there is no spot market)."""

    provider: str
    gpu: str
    usd_per_hour: float
    spot_usd_per_hour: float | None

    def price(self, spot: bool) -> float:
        """The hourly price for one GPU; asking for spot where there is none is the caller's mistake."""
        if not spot:
            return self.usd_per_hour
        if self.spot_usd_per_hour is None:
            raise UnknownGpuError(f"{self.provider} sells no spot {self.gpu}; drop --spot or pick a provider with spot "
                                  f"capacity ({', '.join(p for p in providers() if _has_spot(p, self.gpu))})")
        return self.spot_usd_per_hour


class UnknownGpuError(LookupError):
    """A GPU type or provider the catalog does not know; the message lists the known ones."""


def catalog_source() -> str:
    """The seeded catalog file's path (the one source of prices in-process)."""
    return str(CATALOG_FILE)


@lru_cache(maxsize=1)
def offers() -> tuple[Offer, ...]:
    """Every offer in the seeded file."""
    return _file_offers(CATALOG_FILE)


def providers() -> list[str]:
    return sorted({o.provider for o in offers()})


def gpus(provider: str | None = None) -> list[str]:
    return sorted({o.gpu for o in offers() if provider is None or o.provider == provider})


def offer(provider: str, gpu: str) -> Offer:
    """The offer for ``gpu`` at ``provider``; unknown names raise with the known ones listed."""
    if provider not in providers():
        raise UnknownGpuError(f"unknown provider {provider!r}; known providers: {', '.join(providers())}")
    for candidate in offers():
        if candidate.provider == provider and candidate.gpu.lower() == gpu.lower():
            return candidate
    if gpu.lower() not in {g.lower() for g in gpus()}:
        raise UnknownGpuError(f"unknown GPU type {gpu!r}; known GPU types: {', '.join(gpus())}")
    raise UnknownGpuError(f"{provider} does not offer {gpu}; it offers: {', '.join(gpus(provider))}")


def parse_gpus(spec: str) -> tuple[str, int]:
    """``H100:1`` -> (``H100``, 1), SkyPilot's accelerator syntax; a bare name is one GPU."""
    name, _, count = spec.partition(":")
    if not name or (count and (not count.isdigit() or int(count) < 1)):
        raise UnknownGpuError(f"--gpus {spec!r} is not NAME:COUNT (e.g. H100:1)")
    if name.lower() not in {g.lower() for g in gpus()}:
        raise UnknownGpuError(f"unknown GPU type {name!r}; known GPU types: {', '.join(gpus())}")
    canonical = next(g for g in gpus() if g.lower() == name.lower())
    return canonical, int(count or 1)


def _has_spot(provider: str, gpu: str) -> bool:
    return any(o.provider == provider and o.gpu == gpu and o.spot_usd_per_hour is not None for o in offers())


def catalog_rows(path: Path = CATALOG_FILE) -> list[dict[str, str]]:
    """The seeded file's rows as dicts (provider, gpu, usd_per_hour, spot_usd_per_hour, memory_gb)."""
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return list(csv.DictReader(lines))


def _file_offers(path: Path) -> tuple[Offer, ...]:
    rows = catalog_rows(path)
    return tuple(Offer(r["provider"], r["gpu"], float(r["usd_per_hour"]),
                       float(r["spot_usd_per_hour"]) if r["spot_usd_per_hour"] else None) for r in rows)
