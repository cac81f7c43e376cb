"""Adapters that put a compiled sticc runner behind other libraries' interfaces (optional extras)."""
