"""Manifest data layer: adapters for native FER layouts, SHA-stamped CSV/Parquet manifests.

Python API::

    from fertrain.manifests import load_recipe, build_manifest, load_manifest, SourceFilter, filter_rows
    result = build_manifest(load_recipe("manifests/fer2013.yaml"))
    m = load_manifest(result.path)            # refuses a manifest whose stamp does not match
    train = filter_rows(m.df, SourceFilter(exclude_sources=["ferplus"], splits=["train"]))

Names are imported from their submodules on first use (see `fertrain.lazy`).
"""

from fertrain.lazy import lazy_exports

_EXPORTS = {
    "BuildResult": "build", "build_manifest": "build", "count_table": "build", "DedupPolicy": "dedup",
    "SourceFilter": "filters", "filter_rows": "filters", "Manifest": "io", "check_stamp": "io",
    "load_manifest": "io", "stamp_path": "io", "summary_path": "io", "Recipe": "recipe", "load_recipe": "recipe",
    "recipe_from_cli": "recipe", "VerifyReport": "verify", "verify_manifest": "verify",
}  # fmt: skip
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
