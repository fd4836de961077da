"""Hidden page blocks that show a chapter's recorded run (kept apart from the benchmark: changing how a result is
shown does not make its record stale)."""
