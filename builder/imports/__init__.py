"""`check-imports` on the host side (check): an application's imports tried in its platform's
runtime guest with what builder published. The in-guest scanner and trier are guest/imports.py.

Imports the cells' guest helpers, the machines' protocol, the output and the matrix.
"""
