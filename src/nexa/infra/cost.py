"""Prices and cost: compute by the hour per provider and GPU, API models per million tokens.

The built-in table holds approximate public list prices so a fresh lab shows plausible numbers;
a lab's ``nexa.yaml`` ``prices`` section extends or overrides it (real invoices differ, so teams
that care set their own). Every cost the lab records is made here, so a manifest's dollars can be
recomputed from its hours, tokens and this table.

Typical use::

    prices = PriceTable.from_lab(lab)
    api_usd = prices.api_cost("gpt-4o-mini", input_tokens=1200, output_tokens=300)
    breakdown = prices.compute_cost("lambda", "A100x4", seconds=3600, api_usd=api_usd)
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nexa.ledger import CostBreakdown, Lab, ManifestValidationError

PRICE_CONFIG_VERSION = 1
LOCAL_PROVIDER = "local"
_GPU_COUNT = re.compile(r"^(?P<gpu>.+?)x(?P<count>\d+)$", re.IGNORECASE)
NonNegative = Annotated[float, Field(ge=0)]


class ModelPrice(BaseModel):
    """What one API model charges, in US dollars per million tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_mtok: float = Field(ge=0, description="USD per 1,000,000 prompt (input) tokens.")
    output_per_mtok: float = Field(ge=0, description="USD per 1,000,000 completion (output) tokens.")

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """USD for this much usage."""
        if input_tokens < 0 or output_tokens < 0:
            raise ValueError(f"token counts must be >= 0, got input={input_tokens} output={output_tokens}")
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1_000_000


class PriceConfig(BaseModel):
    """The ``prices`` section of ``nexa.yaml``: entries here win over the built-in table."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = PRICE_CONFIG_VERSION
    compute: dict[str, dict[str, NonNegative]] = Field(
        default_factory=dict, description="provider -> gpu_type -> USD per GPU-hour (on-demand)."
    )
    models: dict[str, ModelPrice] = Field(default_factory=dict, description="API model name -> per-token prices.")


# On-demand and spot USD per GPU-hour from the GPU catalog (SkyPilot's, or the seeded file); nexa.yaml overrides.
def _catalog_prices(spot: bool) -> dict[str, dict[str, float]]:
    from nexa.infra.catalog import offers

    table: dict[str, dict[str, float]] = {}
    for offer in offers():
        price = offer.spot_usd_per_hour if spot else offer.usd_per_hour
        if price is not None:
            table.setdefault(offer.provider, {})[offer.gpu] = price
    return table


# Approximate public API prices (USD per million tokens, late 2025); override them in nexa.yaml.
BUILTIN_MODELS: dict[str, ModelPrice] = {
    "gpt-4o": ModelPrice(input_per_mtok=2.50, output_per_mtok=10.00),
    "gpt-4o-mini": ModelPrice(input_per_mtok=0.15, output_per_mtok=0.60),
    "gpt-4.1": ModelPrice(input_per_mtok=2.00, output_per_mtok=8.00),
    "gpt-4.1-mini": ModelPrice(input_per_mtok=0.40, output_per_mtok=1.60),
    "gpt-4.1-nano": ModelPrice(input_per_mtok=0.10, output_per_mtok=0.40),
}
FREE = ModelPrice(input_per_mtok=0.0, output_per_mtok=0.0)


class UnknownPriceError(LookupError):
    """A model, provider or GPU type has no price; the message says where to add one."""


class PriceTable:
    """Immutable price lookups; build with :meth:`builtin`, :meth:`from_lab` or :meth:`with_model`."""

    def __init__(self, compute: dict[str, dict[str, float]], models: dict[str, ModelPrice],
                 spot: dict[str, dict[str, float]] | None = None):
        self._compute = {p.lower(): {g.lower(): float(v) for g, v in gpus.items()} for p, gpus in compute.items()}
        self._spot = {p.lower(): {g.lower(): float(v) for g, v in gpus.items()} for p, gpus in (spot or {}).items()}
        self._models = dict(models)

    @classmethod
    def builtin(cls) -> "PriceTable":
        return cls(_catalog_prices(spot=False), BUILTIN_MODELS, spot=_catalog_prices(spot=True))

    @classmethod
    def from_lab(cls, lab: Lab) -> "PriceTable":
        """The built-in table extended by ``lab``'s ``nexa.yaml`` prices (the lab's entries win)."""
        return cls.builtin().extended(lab.config.prices, source=str(lab.root / "nexa.yaml"))

    def extended(self, prices: dict[str, Any], source: str = "prices") -> "PriceTable":
        """A copy with ``prices`` (the ``nexa.yaml`` shape) layered on top; bad entries name their field."""
        try:
            config = PriceConfig.model_validate(prices or {})
        except ValidationError as exc:
            problems = [f"prices.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
            raise ManifestValidationError(source, problems) from exc
        compute = {p: dict(g) for p, g in self._compute.items()}
        for provider, gpus in config.compute.items():
            compute.setdefault(provider.lower(), {}).update({g.lower(): v for g, v in gpus.items()})
        return PriceTable(compute, {**self._models, **config.models}, spot=self._spot)

    def with_model(self, model: str, input_per_mtok: float, output_per_mtok: float) -> "PriceTable":
        """A copy where ``model`` costs the given prices (for a command-line override)."""
        return self.extended({"models": {model: {"input_per_mtok": input_per_mtok, "output_per_mtok": output_per_mtok}}})

    # -- API models -----------------------------------------------------------------------------
    def has_model(self, model: str) -> bool:
        return model in self._models

    def model_price(self, model: str) -> ModelPrice:
        if model not in self._models:
            raise UnknownPriceError(
                f"no price for model {model!r}; add it to nexa.yaml as "
                f"prices: {{models: {{{model}: {{input_per_mtok: X, output_per_mtok: Y}}}}}} "
                f"(use 0 for a self-hosted model). Known models: {sorted(self._models)}"
            )
        return self._models[model]

    def api_cost(self, model: str, input_tokens: int, output_tokens: int) -> float:
        """USD for one call's (or many calls') usage at ``model``'s per-million-token prices."""
        return self.model_price(model).cost(input_tokens, output_tokens)

    # -- compute --------------------------------------------------------------------------------
    def hourly(self, provider: str, gpu_type: str, spot: bool = False) -> float:
        """USD per hour for ``gpu_type`` at ``provider`` (``A100x4`` is four A100s); ``local`` is free unless the lab prices it."""
        if provider.lower() == LOCAL_PROVIDER and LOCAL_PROVIDER not in self._compute:
            return 0.0
        table = self._spot if spot else self._compute
        gpus = table.get(provider.lower())
        if gpus is None:
            kind = "spot" if spot else "compute"
            raise UnknownPriceError(
                f"no {kind} prices for provider {provider!r}; known providers: {sorted([LOCAL_PROVIDER, *table])}. "
                f"Add prices: {{compute: {{{provider}: {{GPU: usd_per_hour}}}}}} to nexa.yaml"
            )
        name, count = _split_count(gpu_type)
        if name.lower() not in gpus:
            raise UnknownPriceError(
                f"no {'spot ' if spot else ''}price for GPU {name!r} at {provider!r}; known: {sorted(gpus)}. "
                f"Add prices: {{compute: {{{provider}: {{{name}: usd_per_hour}}}}}} to nexa.yaml"
            )
        return gpus[name.lower()] * count

    def compute_cost(self, provider: str, gpu_type: str, seconds: float, api_usd: float = 0.0,
                     spot: bool = False) -> CostBreakdown:
        """A run's cost: ``seconds`` of ``gpu_type`` at ``provider`` (spot or on-demand) plus any API spend."""
        if seconds < 0 or api_usd < 0 or not math.isfinite(seconds):
            raise ValueError(f"seconds and api_usd must be finite and >= 0, got {seconds} and {api_usd}")
        per_hour = self.hourly(provider, gpu_type, spot=spot)
        hours = seconds / 3600
        compute_usd = per_hour * hours
        return CostBreakdown(provider=provider, gpu_type=gpu_type, usd_per_hour=per_hour, compute_hours=hours,
                             compute_usd=compute_usd, api_usd=api_usd, total_usd=compute_usd + api_usd)


def _split_count(gpu_type: str) -> tuple[str, int]:
    """``H100x8`` -> (``H100``, 8); a plain name is one GPU."""
    match = _GPU_COUNT.match(gpu_type)
    if match is None:
        return gpu_type, 1
    return match["gpu"], int(match["count"])


class BudgetExceededError(RuntimeError):
    """A run spent more than the budget it was launched with; it is stopped, not left to run up the bill."""


class NodePricing:
    """How the node this process runs on is billed: spot or on-demand, and the run's budget (if any).

    A launcher exports ``NEXA_SPOT`` and ``NEXA_BUDGET_USD`` into the node's environment; the
    pipeline runner prices every stage with them and stops once the spend crosses the budget.
    """

    def __init__(self, spot: bool = False, budget_usd: float | None = None):
        self.spot, self.budget_usd = spot, budget_usd

    @classmethod
    def from_env(cls) -> "NodePricing":
        import os

        budget = os.environ.get("NEXA_BUDGET_USD")
        return cls(spot=os.environ.get("NEXA_SPOT") == "1", budget_usd=float(budget) if budget else None)

    def cost(self, prices: PriceTable, provider: str, gpu_type: str, seconds: float, api_usd: float = 0.0) -> CostBreakdown:
        return prices.compute_cost(provider, gpu_type, seconds, api_usd=api_usd, spot=self.spot)

    def check_budget(self, spent_usd: float, after: str) -> None:
        """Raise once ``spent_usd`` is over the budget, naming where it was crossed."""
        if self.budget_usd is not None and spent_usd > self.budget_usd:
            raise BudgetExceededError(f"spent ${spent_usd:.4f} after stage {after!r}, over the run's budget of "
                                      f"${self.budget_usd:.4f}; stopped")
