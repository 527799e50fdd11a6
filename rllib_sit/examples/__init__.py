"""Worked examples on the package's base (importable, trained by the test suite)."""
