"""Errors the runtime raises; each names the bundle file and what was expected."""


class BundleError(Exception):
    """A bundle is missing a file, has a malformed one, or asks for something it does not contain."""


class IntegrityError(BundleError):
    """A bundle file's SHA-256 differs from the manifest, or a file that must be listed is not."""


class SafetyError(Exception):
    """A request for a capability the bundle's safety mode does not allow."""
