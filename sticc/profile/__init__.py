"""Profiles of a device and of a model's shards: their file formats and cost functions, and the measurements that need no compiled runner (the lanes alone, importance by ablation)."""
