"""Finding the unusual: detectors on embeddings, active learning, similarity search, maps.

Pure NumPy/scikit-learn algorithms. Fitting a detector to a model's images and scoring
its performance live in ``evaluation/anomalies.py``; the stored images' ranking, marks and
look-alikes in ``pipeline/discovery.py``.
"""
