"""The data layer's entry points for dataset versions; the contract itself lives in ``nexa.ledger.datasets``."""

from nexa.ledger.datasets import (  # noqa: F401  (re-exported for the data layer's callers)
    read_dataset_manifest,
    read_dataset_rows,
    rows_content_hash,
    write_dataset_version,
)
