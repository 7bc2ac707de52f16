"""Converters that bring AST checkpoints from elsewhere into this package (the CLIs live in `convert/`)."""
