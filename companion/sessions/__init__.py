"""Sessions: the six phases in order, and the content each phase produces."""
