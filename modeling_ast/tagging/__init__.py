"""Tag a whole collection of recordings into one file: `ast-tag MODEL INPUTS OUTPUT`, or `tag_collection`."""

from .inputs import TagInput, collect_inputs
from .run import TagOptions, classify_isolated, tag_collection

__all__ = ["TagInput", "TagOptions", "classify_isolated", "collect_inputs", "tag_collection"]
