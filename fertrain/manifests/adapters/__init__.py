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

ADAPTERS: dict[str, Adapter] = {
    a.name: a
    for a in (
        Adapter("fer2013", fer2013, {"layout": "auto", "csv": "fer2013.csv", "split_dirs": None},
                ("train", "val", "test"), "FER2013 CSV (emotion,pixels,Usage) or train/ validation/ folders"),
        Adapter("ferplus", ferplus,
                {"labels_csv": "fer2013new.csv", "fer2013_csv": "fer2013.csv", "mode": "majority", "partial": False},
                ("train", "val", "test"), "FERPlus votes joined by row position with fer2013.csv"),
        Adapter("rafdb", rafdb,
                {"label_file": "EmoLabel/list_patition_label.txt", "image_dir": "Image/aligned",
                 "image_suffix": "_aligned"},
                ("train", "test"), "RAF-DB basic list_patition_label.txt + aligned images"),
        Adapter("affectnet", affectnet,
                {"train_csv": "training.csv", "val_csv": "validation.csv",
                 "image_dir": "Manually_Annotated_Images", "validation_split": "val"},
                ("train", "val"), "AffectNet training.csv/validation.csv with boxes and landmarks"),
        Adapter("expw", expw, {"label_file": "label/label.lst", "image_dir": "image/origin", "min_confidence": None,
                               "clip_boxes": True},
                (), "ExpW label.lst, one row per face box in uncropped photos"),
        Adapter("ckplus", ckplus, {}, (), "CK+48 class folders, subject id from filename"),
        Adapter("jaffe", jaffe, {}, (), "JAFFE, label from filename"),
        Adapter("folder", folder, {"label_map": None, "split_dirs": None, "group_regex": None},
                (), "generic class-subfolder tree with a label_map"),
    )
}  # fmt: skip


def get_adapter(name: str) -> Adapter:
    try:
        return ADAPTERS[name]
    except KeyError:
        raise ConfigError(f"unknown adapter {name!r}; known adapters: {', '.join(ADAPTERS)}") from None


__all__ = ["ADAPTERS", "Adapter", "AdapterContext", "get_adapter"]
