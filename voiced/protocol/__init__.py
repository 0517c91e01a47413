"""voiced.protocol."""
