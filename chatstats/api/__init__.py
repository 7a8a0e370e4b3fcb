"""HTTP and SSE surface (Starlette)."""
