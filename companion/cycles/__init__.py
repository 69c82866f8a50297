"""Cycles: as many sessions as members, each member client once."""
