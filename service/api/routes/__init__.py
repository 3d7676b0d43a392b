"""Routers: studies, trials (ask/tell), results, imports, queues, admin, health, dashboard."""
