"""Performance measurement tools (not imported by any server)."""
