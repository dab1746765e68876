"""The output folder: publishing (publish, with its crash-safe journal and lock), what a
published platform folder says about itself (index), reading it back for applications
(published), merging CI jobs' outputs (merge), what the servers need (system), the signatures
of what is published (signing), and where each artifact came from (provenance, sbom).

Imports the matrix, fetch (for hashing) and builder.errors; never a machine or a stage.
"""
