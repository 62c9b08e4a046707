"""BCB transport emulator."""
