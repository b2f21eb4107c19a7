"""The notifier: tells people about escalations and alerts through their channels."""
