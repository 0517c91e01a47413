"""voiced.plugins."""
