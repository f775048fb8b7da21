"""Registry of dataset adapters: name -> (function, options with defaults, native splits)."""

from __future__ import annotations

from fertrain.errors import ConfigError
from fertrain.manifests.adapters.affectnet import affectnet
from fertrain.manifests.adapters.base import Adapter, AdapterContext
from fertrain.manifests.adapters.ckplus import ckplus
from fertrain.manifests.adapters.expw import expw
from fertrain.manifests.adapters.fer2013 import fer2013
from fertrain.manifests.adapters.ferplus import ferplus
from fertrain.manifests.adapters.folder import folder
from fertrain.manifests.adapters.jaffe import jaffe
from fertrain.manifests.adapters.rafdb import rafdb

_REGISTRY = (
    Adapter("fer2013", fer2013, doc="FER2013 CSV (emotion,pixels,Usage) or train/ validation/ folders",
            defaults={"layout": "auto", "csv": "fer2013.csv", "split_dirs": None}),
    Adapter("ferplus", ferplus, doc="FERPlus votes joined by row position with fer2013.csv",
            defaults={"labels_csv": "fer2013new.csv", "fer2013_csv": "fer2013.csv", "mode": "majority",
                      "partial": False}),
    Adapter("rafdb", rafdb, doc="RAF-DB basic list_patition_label.txt + aligned images",
            defaults={"label_file": "EmoLabel/list_patition_label.txt", "image_dir": "Image/aligned",
                      "image_suffix": "_aligned"}),
    Adapter("affectnet", affectnet, doc="AffectNet training.csv/validation.csv with boxes and landmarks",
            defaults={"train_csv": "training.csv", "val_csv": "validation.csv",
                      "image_dir": "Manually_Annotated_Images", "validation_split": "val"}),
    Adapter("expw", expw, doc="ExpW label.lst, one row per face box in uncropped photos",
            defaults={"label_file": "label/label.lst", "image_dir": "image/origin", "min_confidence": None,
                      "clip_boxes": True}),
    Adapter("ckplus", ckplus, doc="CK+48 class folders, subject id from filename", defaults={}),
    Adapter("jaffe", jaffe, doc="JAFFE images named SUBJECT.CODEn.ID.tiff at any depth, label from filename",
            defaults={}),
    Adapter("folder", folder, doc="generic class-subfolder tree with a label_map",
            defaults={"label_map": None, "split_dirs": None, "group_regex": None}),
)  # fmt: skip
ADAPTERS: dict[str, Adapter] = {a.name: a for a in _REGISTRY}


def get_adapter(name: str) -> Adapter:
    try:
        return ADAPTERS[name]
    except KeyError:
        raise ConfigError(f"unknown adapter {name!r}; known adapters: {', '.join(ADAPTERS)}") from None


__all__ = ["ADAPTERS", "Adapter", "AdapterContext", "get_adapter"]
