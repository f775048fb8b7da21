"""Work on trained teachers (runs or ensembles): post-hoc calibration and evaluation reports."""

from fertrain.posthoc.calibrate import calibrate_teacher
from fertrain.posthoc.evaluate import evaluate_teacher

__all__ = ["calibrate_teacher", "evaluate_teacher"]
