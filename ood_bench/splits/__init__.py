"""Split files (schema, loading, validation) and the generators that make them."""

from .schema import Fold, SplitSet, list_splits, load_split, load_split_file, parse_fold_spec, save_split, split_path

__all__ = [
    "Fold", "SplitSet", "list_splits", "load_split", "load_split_file", "parse_fold_spec", "save_split", "split_path",
]
