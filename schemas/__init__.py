"""callqa schemas: the event contract, element records and output table schemas (leaf package)."""
