"""NexaCompute: an artifact-first lab that turns teacher models into small, verified, teacher-free students."""

__version__ = "0.1.0"
