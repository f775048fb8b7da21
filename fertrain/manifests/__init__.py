"""Manifest data layer: adapters for native FER layouts, SHA-stamped CSV/Parquet manifests.

Python API::

    from fertrain.manifests import load_recipe, build_manifest, load_manifest, SourceFilter, filter_rows
    result = build_manifest(load_recipe("manifests/fer2013.yaml"))
    m = load_manifest(result.path)            # refuses a manifest whose stamp does not match
    train = filter_rows(m.df, SourceFilter(exclude_sources=["ferplus"], splits=["train"]))
"""

from fertrain.manifests.build import BuildResult, build_manifest, count_table
from fertrain.manifests.dedup import DedupPolicy
from fertrain.manifests.filters import SourceFilter, filter_rows
from fertrain.manifests.io import Manifest, check_stamp, load_manifest, stamp_path, summary_path
from fertrain.manifests.recipe import Recipe, load_recipe, recipe_from_cli
from fertrain.manifests.verify import VerifyReport, verify_manifest

__all__ = [
    "BuildResult", "DedupPolicy", "Manifest", "Recipe", "SourceFilter", "VerifyReport", "build_manifest",
    "check_stamp", "count_table", "filter_rows", "load_manifest", "load_recipe", "recipe_from_cli",
    "stamp_path", "summary_path", "verify_manifest",
]  # fmt: skip
