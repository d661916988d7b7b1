"""Small shared helpers: atomic file writes, path checks, hashing."""
