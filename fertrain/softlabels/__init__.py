"""Soft labels: teacher probabilities over manifest rows, for offline distillation."""

from fertrain.softlabels.export import export_softlabels
from fertrain.softlabels.io import SoftLabels, load_softlabels

__all__ = ["SoftLabels", "export_softlabels", "load_softlabels"]
