"""The HTTP API: one router per resource, combined in ``service.api.router``."""
