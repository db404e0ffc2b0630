"""The files stages pass each other are validated contracts; listings written before versioning still load."""

import json

import pytest

from nexa.ledger import ManifestValidationError
from nexa.ledger.datasets import read_split
from nexa.ledger.listings import DatasetListing, PairedDataset, read_listing, read_paired, write_contract


def test_a_listing_without_schema_version_still_loads(tmp_path):
    file = tmp_path / "datasets.json"
    file.write_text(json.dumps({"capabilities": {"reasoning": {"ref": "r@v1", "content_hash": "ab", "rows": 3}}}))
    listing = read_listing(file)
    assert listing.schema_version == 1 and listing.capabilities["reasoning"].ref == "r@v1"


def test_round_trip_and_wrong_file_names_the_field(tmp_path):
    paired = write_contract(tmp_path / "dataset.json", PairedDataset(ref="d@v2", source="s@v1"))
    assert read_paired(paired) == PairedDataset(ref="d@v2", source="s@v1")
    with pytest.raises(ManifestValidationError, match="capabilities"):
        read_listing(paired)  # a dataset.json where a datasets.json belongs


def test_read_split_validates_the_listing(lab, tmp_path):
    bad = write_contract(tmp_path / "datasets.json", DatasetListing(capabilities={}))
    assert read_split(lab, bad, "eval") == []
    (tmp_path / "broken.json").write_text(json.dumps({"capabilities": {"x": {"reff": "typo"}}}))
    with pytest.raises(ManifestValidationError, match="ref"):
        read_split(lab, tmp_path / "broken.json", "eval")
