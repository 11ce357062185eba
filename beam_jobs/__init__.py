"""callqa jobs: options, pipeline assembly and CLI entry points."""
