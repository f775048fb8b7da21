"""The canonical 7-class label space every adapter maps into.

The order is fixed (FER2013's own order) and is what every model head, soft-label file
and confusion matrix in fertrain indexes by. Adapters never infer label order from folder
order: each owns an explicit crosswalk into these indices.
"""

from __future__ import annotations

CLASS_NAMES: tuple[str, ...] = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
NUM_CLASSES = len(CLASS_NAMES)
CLASS_INDEX: dict[str, int] = {name.lower(): i for i, name in enumerate(CLASS_NAMES)}


def class_index(name: str) -> int:
    """Canonical index of a class name (case-insensitive); raises with the valid names."""
    try:
        return CLASS_INDEX[name.strip().lower()]
    except KeyError:
        raise KeyError(f"unknown class {name!r}; expected one of {', '.join(CLASS_NAMES)}") from None


def soft_column(index: int) -> str:
    """Manifest column name holding the soft-label probability of class `index`."""
    return f"soft_{CLASS_NAMES[index].lower()}"


SOFT_COLUMNS: tuple[str, ...] = tuple(soft_column(i) for i in range(NUM_CLASSES))
