"""The matrix: matrix.yaml read once into frozen dataclasses (load, model), expanded into cells,
selected and keyed (plan), and printed for CI systems (ci).

Pure: no engine, no network, no files but the one it reads. Imports only builder.errors.
"""
