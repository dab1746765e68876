"""Deploy what builder published: offline release virtualenvs on a pool of servers, switched
atomically between hooks, in batches, with rollback. host.py (builder/server/) does the per-host
steps; the deploy: part of matrix.yaml is read with the rest (builder.matrix.deploy); resolve and bundle decide what a release
is; roll drives the hosts over ssh; cli wires the commands.

Imports the output (what is published), the machines' ssh transport, fetch and the matrix;
nothing imports deploy but the command line.
"""
