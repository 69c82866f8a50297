"""Assistance for the frame: clarity prompts (phase 2), contract drafts (phase 3), and more to come.

Deterministic cues answer at once; the LLM (through companion.llm, never directly) refines.
"""
