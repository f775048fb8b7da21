"""fertrain: from raw facial-expression datasets to a small, calibrated, deployable model."""

__version__ = "0.1.0"
