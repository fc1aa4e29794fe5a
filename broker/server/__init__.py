"""The long-running server: worker processes, their supervision, connection limits."""
