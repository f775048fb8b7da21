"""Embedded synthetic demo data and the `make demo` pipeline."""
