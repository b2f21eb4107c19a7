"""The listener: polls sources and publishes each new post as a mention."""
