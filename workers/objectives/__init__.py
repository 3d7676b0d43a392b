"""Objectives a worker can run, looked up by name (see ``registry``)."""
