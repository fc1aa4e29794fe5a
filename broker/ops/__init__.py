"""Running the gateway: logging, metrics, background tasks, expiring caches."""
