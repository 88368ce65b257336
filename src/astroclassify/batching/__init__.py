"""Batch: a collection classified on a Dask cluster, written to Parquet (``batch``)."""
