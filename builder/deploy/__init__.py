"""Deploy what builder published: offline release virtualenvs on a pool of servers, switched
atomically between hooks, in batches, with rollback. host.py (builder/guest/) does the per-host
steps; targets reads the deploy: part of matrix.yaml; resolve and bundle decide what a release
is; roll drives the hosts over ssh; cli wires the commands."""
