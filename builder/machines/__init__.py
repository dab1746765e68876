"""Machines: where a cell's guest runs. One protocol (base), one module per backend (docker,
vagrant), the Docker engine both use (engine), image inputs (images), the OpenSSH transport the
vagrant backend and deploy share (ssh), and the registry the command line builds them from.

Imports the matrix, builder.runner and builder.errors; never the stages or the output. The two
backends never import each other.
"""
