"""Retrieval by meaning: embeddings, the vector index, hybrid search and context packing."""
