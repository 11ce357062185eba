"""Unit tests of `transforms`, one folder per package."""
