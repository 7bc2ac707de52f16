"""Converters that bring AST checkpoints from elsewhere into this package (their command lines: `cli`)."""
