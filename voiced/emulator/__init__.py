"""voiced.emulator."""
