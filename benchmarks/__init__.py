"""Chapter benchmarks and recorded runs.

``python -m benchmarks.<chapter> --data-root data --record`` measures what is too
slow or too hardware-bound for every build and writes docs/records/<chapter>.json
with its provenance; ``benchmarks/reports/<chapter>.py`` holds the hidden page
blocks that show that record.
"""
