"""Run ids, versioned manifest contracts, the two-tier artifact store, registries and lineage, with every durable write atomic and hashed."""

from nexa.ledger.errors import (
    ArtifactNotFoundError,
    CorruptArtifactError,
    LedgerError,
    ManifestValidationError,
)
from nexa.ledger.hashing import sha256_bytes, sha256_file, sha256_json
from nexa.ledger.ids import new_run_id, parse_run_id
from nexa.ledger.lab import Lab
from nexa.ledger.manifests import (
    ArtifactRef,
    CostBreakdown,
    DatasetManifest,
    Environment,
    FilterRecord,
    RunManifest,
)
from nexa.ledger.retention import failing_capabilities, retention

__all__ = [
    "ArtifactNotFoundError",
    "ArtifactRef",
    "CorruptArtifactError",
    "CostBreakdown",
    "DatasetManifest",
    "Environment",
    "FilterRecord",
    "Lab",
    "LedgerError",
    "ManifestValidationError",
    "RunManifest",
    "failing_capabilities",
    "new_run_id",
    "parse_run_id",
    "retention",
    "sha256_bytes",
    "sha256_file",
    "sha256_json",
]
