"""Price table: built-in prices, lab overrides, clear errors for unknown entries, exact breakdowns."""

from __future__ import annotations

import pytest
import yaml

from nexa.infra.cost import PriceTable, UnknownPriceError
from nexa.ledger import Lab, ManifestValidationError


def test_api_cost_is_per_million_input_and_output_tokens():
    prices = PriceTable.builtin()
    assert prices.api_cost("gpt-4o-mini", 1_000_000, 0) == pytest.approx(0.15)
    assert prices.api_cost("gpt-4o-mini", 2000, 500) == pytest.approx((2000 * 0.15 + 500 * 0.60) / 1e6)
    with pytest.raises(ValueError, match="token counts"):
        prices.api_cost("gpt-4o-mini", -1, 0)


def test_compute_cost_breakdown_counts_gpus_and_adds_api_spend():
    prices = PriceTable.builtin().extended({"compute": {"lambda": {"H100": 2.0}}})
    cost = prices.compute_cost("lambda", "H100x4", seconds=1800, api_usd=1.25)
    assert (cost.usd_per_hour, cost.compute_hours, cost.compute_usd) == (8.0, 0.5, 4.0)
    assert cost.api_usd == 1.25 and cost.total_usd == 5.25 and cost.provider == "lambda" and cost.gpu_type == "H100x4"


def test_local_compute_is_free_whatever_the_gpu():
    cost = PriceTable.builtin().compute_cost("local", "A100x8", seconds=7200)
    assert cost.total_usd == 0 and cost.compute_hours == 2


def test_lab_config_extends_and_overrides_the_builtin_table(tmp_path):
    lab = Lab.init(tmp_path)
    config = yaml.safe_load((lab.root / "nexa.yaml").read_text())
    config["prices"] = {"models": {"my-vllm": {"input_per_mtok": 0, "output_per_mtok": 0},
                                   "gpt-4o": {"input_per_mtok": 1, "output_per_mtok": 2}},
                        "compute": {"onprem": {"a6000": 0.5}}}
    (lab.root / "nexa.yaml").write_text(yaml.safe_dump(config))
    prices = PriceTable.from_lab(Lab(lab.root))
    assert prices.api_cost("my-vllm", 10**6, 10**6) == 0
    assert prices.api_cost("gpt-4o", 10**6, 10**6) == 3  # the lab's price wins over the built-in one
    assert prices.api_cost("gpt-4o-mini", 10**6, 0) == pytest.approx(0.15)  # built-ins not overridden remain
    assert prices.hourly("onprem", "A6000x2") == 1.0  # names are case-insensitive


def test_unknown_entries_and_bad_config_say_what_to_add(tmp_path):
    prices = PriceTable.builtin()
    with pytest.raises(UnknownPriceError, match=r"no price for model 'mystery'.*prices: \{models: \{mystery"):
        prices.api_cost("mystery", 1, 1)
    with pytest.raises(UnknownPriceError, match="no compute prices for provider 'acme'.*known providers"):
        prices.hourly("acme", "H100")
    with pytest.raises(UnknownPriceError, match="no price for GPU 'TPU' at 'lambda'"):
        prices.hourly("lambda", "TPUx8")
    with pytest.raises(ManifestValidationError, match=r"prices\.models\.m\.input_per_mtok"):
        prices.extended({"models": {"m": {"input_per_mtok": -1, "output_per_mtok": 1}}}, source="nexa.yaml")
    with pytest.raises(ManifestValidationError, match=r"prices\.compute\.acme\.H100"):
        prices.extended({"compute": {"acme": {"H100": -2}}})


def test_with_model_is_a_copy():
    base = PriceTable.builtin()
    priced = base.with_model("mine", 1.0, 4.0)
    assert priced.api_cost("mine", 10**6, 10**6) == 5.0 and not base.has_model("mine")
