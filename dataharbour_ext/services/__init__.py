"""Domain services, free of Tornado: they own state changes and publish events."""
