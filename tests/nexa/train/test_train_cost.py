"""`nexa train` records what it cost: its wall-clock hours at the node's price (spot when the node is spot)."""

import pytest
import yaml

from nexa.infra.cost import UnknownPriceError
from nexa.ledger.runs import list_runs
from nexa.train.config import load_train_config
from nexa.train.engine import train
from train_fixtures import write_config


def _price_local_cpu(lab, usd_per_hour: float) -> None:
    config = yaml.safe_load((lab.root / "nexa.yaml").read_text())
    config["prices"] = {"compute": {"local": {"cpu": usd_per_hour}}}
    (lab.root / "nexa.yaml").write_text(yaml.safe_dump(config))


def test_a_training_run_manifest_carries_hours_times_price(lab, monkeypatch):
    from nexa.ledger import Lab

    _price_local_cpu(lab, 36.0)
    priced = Lab(lab.root)
    outcome = train(priced, load_train_config(write_config(priced, "costed", optim={"max_steps": 4, "batch_size": 4})))
    manifest = next(m for m in list_runs(priced) if m.run_id == outcome.run_id)
    assert manifest.cost.usd_per_hour == 36.0 and manifest.cost.compute_hours > 0
    assert manifest.cost.total_usd == pytest.approx(manifest.cost.compute_hours * 36.0)
    assert manifest.cost_estimate_usd_total == manifest.cost.total_usd


def test_an_unpriced_node_fails_before_training(lab, monkeypatch):
    monkeypatch.setenv("NEXA_PROVIDER", "acme-cloud")
    with pytest.raises(UnknownPriceError, match="acme-cloud"):
        train(lab, load_train_config(write_config(lab, "unpriced", optim={"max_steps": 2, "batch_size": 4})))
