"""voiced.devices."""
