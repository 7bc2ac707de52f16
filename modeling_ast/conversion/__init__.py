"""Converters that bring AST checkpoints from elsewhere into this package (their command lines: `cli`)."""

__all__: list[str] = []  # each converter is imported from its module
