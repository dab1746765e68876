"""`add NAME`: derive a package's entry (release, pins, OS packages, extensions, dependencies) per
platform from the index and from probe builds, prove it as a cell and write it into matrix.yaml.

Imports the cells, the machines, fetch and the matrix; only the command line imports it."""
