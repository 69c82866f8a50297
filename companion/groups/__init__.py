"""Groups, their settings and their members (each with a role: facilitator or member)."""
