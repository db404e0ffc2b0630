"""Getting compute and giving it back: SkyPilot task rendering, Tailscale bootstrap, a local ephemeral backend, hardware detection and cost tracking."""
