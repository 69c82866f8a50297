"""Sealed per-group memory: local embeddings, one Chroma collection per group, sealed documents.

`outbox` (what to index, written with the content) is all the services import; `service`
(Memory: index, search, reindex, drop) loads Chroma and the embedding model only when used.
"""
