"""The `sticc` command line and the schema generator: the top layer, the only one that imports lazily (for start-up time)."""
