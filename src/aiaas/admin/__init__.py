"""Administration: accounts (state, suspension, limits) and the audit log."""
