"""Ingest: archives (APOD, ESA/Hubble) read politely, items deduplicated, stored, classified, alerted.

``sources`` (the contract), ``http`` (the polite client), ``apod`` and ``esahubble`` (the
archives), ``catalog`` (names to sources), ``run`` (``ingest``), ``watch`` and ``alerts``.
"""
