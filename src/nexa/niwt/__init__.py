"""The Nexus method: teacher registry, activation profiling, student synthesis, anchored distillation and the per-capability retention gate."""
