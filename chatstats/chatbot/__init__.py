"""The AI chatbot: threads, documents, turns and their tools (its own tables and ids)."""
