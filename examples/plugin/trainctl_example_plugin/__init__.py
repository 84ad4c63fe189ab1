"""A worked trainctl plugin; `components` registers everything (the entry point names it)."""
