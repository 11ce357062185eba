"""callqa transforms: one composite PTransform per stage, and the I/O edges."""
