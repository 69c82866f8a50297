"""The audit log: who did what on which group and when, never content."""
