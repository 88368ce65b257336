"""Datasets, labels, named collections and seeded splits; no network except ``fetch``."""
