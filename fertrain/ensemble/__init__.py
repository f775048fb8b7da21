"""Teachers as one source of logits: single runs and weighted ensembles (e.g. RN18 0.7 : B3 0.3)."""

from fertrain.ensemble.fusion import fuse, search_weights
from fertrain.ensemble.teacher import Teacher, load_teacher, parse_member, write_ensemble

__all__ = ["Teacher", "fuse", "load_teacher", "parse_member", "search_weights", "write_ensemble"]
