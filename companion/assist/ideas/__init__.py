"""The ideas of a consultation, cut from what consultants said and grouped into themes."""
