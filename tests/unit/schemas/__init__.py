"""Unit tests of `schemas`, one folder per package."""
