"""voiced.audio."""
