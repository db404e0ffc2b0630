"""The static report and dashboard: leaderboard, cost vs quality, per-capability scores, progress over time and sample review."""
