"""Scripts copied to production servers and run there: host.py, deploy's per-host steps.

Stand-alone, standard library only, Python 2.6+ and 3: a server has nothing of builder. The
import checker a release runs on its host is guest/imports.py, which deploy copies beside it:
it lives with the guest scripts because check-imports runs the same file in runtime guests.
"""
