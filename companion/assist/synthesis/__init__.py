"""The client's draft synthesis of a consultation, kept ready while phase 4 runs."""
