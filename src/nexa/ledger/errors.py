"""Error types of the ledger, each naming the artifact it is about so the message says what to fix."""

from __future__ import annotations


class LedgerError(Exception):
    """Base class for everything the ledger refuses to do."""


class ArtifactNotFoundError(LedgerError, FileNotFoundError):
    """An artifact, version or run that was asked for is not in the store."""


class CorruptArtifactError(LedgerError):
    """An artifact's bytes do not hash to what was recorded when it was written."""

    def __init__(self, location: str, expected: str, actual: str, reason: str = "hash mismatch"):
        self.location, self.expected, self.actual = location, expected, actual
        super().__init__(
            f"corrupt artifact {location}: {reason} (expected sha256 {expected[:16]}…, got {actual[:16]}…). "
            "It was not loaded; delete it and rerun the stage that wrote it."
        )


class ManifestValidationError(LedgerError):
    """A manifest file does not match its schema; the message lists every problem with its field."""

    def __init__(self, location: str, problems: list[str]):
        self.location, self.problems = location, problems
        listing = "\n  - ".join(problems)
        super().__init__(f"invalid manifest {location}:\n  - {listing}")
