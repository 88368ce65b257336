"""Metrics, calibration and reports; nothing here builds or trains a model."""
