"""A tiny HTTP service that needs compiled third-party modules: the deploy example's application."""
VERSION = "v1"
