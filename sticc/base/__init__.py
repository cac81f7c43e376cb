"""Foundations every stage uses: user errors, validated JSON (pydantic), durable files, the cache, progress, the measuring protocol's primitives."""
