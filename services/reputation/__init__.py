"""The reputation service: hourly counters from TRIAGED, spike detection and reputation alerts."""
