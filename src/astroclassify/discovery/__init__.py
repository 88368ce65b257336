"""Discover: anomaly detectors on embeddings, their fitting and evaluation, the re-learned ranking,
look-alike search and the map, and the same served over the stored collection (``collection``).

``detectors``, ``ranking``, ``similarity`` and ``layout`` are NumPy algorithms that prediction
also uses; ``fitting`` and ``evaluation`` embed labelled images through a model;
``collection`` reads the store.
"""
