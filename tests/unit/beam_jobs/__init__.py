"""Unit tests of `beam_jobs`, one folder per package."""
