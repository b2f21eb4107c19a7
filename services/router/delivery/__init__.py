"""Deliveries to destinations: the worker, the CRM adapters and the local outbox and NATS destinations."""
