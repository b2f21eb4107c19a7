"""The router: turns complaints into cases and delivers them to destinations."""
