"""The HTML report and JSON summary of a date range of the warehouse (``callqa report``)."""
