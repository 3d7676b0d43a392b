"""Running studies: the scheduler and its engines, dispatch, leases, results and budgets,
the control worker and the embedded runner."""
