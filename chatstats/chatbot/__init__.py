"""The AI chatbot: its read-only tools over the history (tools.py), shared with `chatstats mcp`."""
