"""Cells: one cell's build and test in guests (cell), the pipeline of stages that runs them all
(pipeline), what a cell keeps between stages (state), and a person's shell in a cell (shell).

Imports the matrix, the machines (through the protocol: backends are handed in), the output and
fetch; never the command line, deploy or the reports.
"""
