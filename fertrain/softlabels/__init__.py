"""Soft labels: teacher probabilities over manifest rows, for offline distillation."""

from fertrain.softlabels.export import export_softlabels
from fertrain.softlabels.io import SoftLabels, load_softlabels
from fertrain.softlabels.out_of_fold import export_out_of_fold

__all__ = ["SoftLabels", "export_out_of_fold", "export_softlabels", "load_softlabels"]
