"""Generating on eval prompts, judging them (exact, heuristic rubric, LLM-as-judge) and building leaderboards."""
