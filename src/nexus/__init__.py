"""The teacher-free runtime: loads a Nexus bundle and generates with torch, safetensors and tokenizers only."""

from nexus.errors import BundleError, IntegrityError, SafetyError
from nexus.model import NexusModel

__all__ = ["BundleError", "IntegrityError", "NexusModel", "SafetyError"]
__version__ = "0.1.0"
