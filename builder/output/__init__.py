"""The output folder: publishing (publish, with its crash-safe journal and lock), what a
published platform folder says about itself (index), reading it back for applications
(published), and merging CI jobs' outputs (merge).

Imports the matrix, fetch (for hashing) and builder.errors; never a machine or a stage.
"""
