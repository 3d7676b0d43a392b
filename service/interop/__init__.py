"""Other tools in and out: the HTTP client, past runs imported from files, and export
into an Optuna storage."""
