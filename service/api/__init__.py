"""The HTTP API: one router per resource in ``routes``, included by ``service.api.app``."""
