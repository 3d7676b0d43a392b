"""Routers: studies, trials (ask/tell), queues, results, health."""
