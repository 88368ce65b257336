"""Plumbing every stage shares: the polite, capped, deadline-bound HTTP client, and alerts delivered at least once."""
