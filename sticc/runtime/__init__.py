"""The runtime every generated runner inlines: `core` (store format, weight pool, reader, IO lane,
call driver; family-agnostic), `decode` (dequantization on the compute lane) and one module of
kernels per model family (`encoder`). sticc imports the same modules, so the store writer, the
profilers, the tests and every runner share one implementation."""
