"""Notification channels, one module per service, all behind :class:`channels.base.Channel`."""
