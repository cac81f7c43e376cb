"""The model: specs and families, checkpoint import, sharding, quantization (with activation statistics), the store on disk, and the texts sticc ships."""
