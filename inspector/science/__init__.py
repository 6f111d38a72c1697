"""The HTSR science: eigenvalues, power-law and Marchenko-Pastur fits, phases and per-layer metrics.

Pure functions over arrays and records. Nothing here reads files, knows a file format, prints or renders:
`inspector.pipeline` feeds it matrices and `inspector.render` shows what it returns (the import contracts
in pyproject.toml enforce the direction).
"""
