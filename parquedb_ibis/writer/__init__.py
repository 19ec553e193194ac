"""Event sourcing on top of the store: collections, segments, checkpoints, atomic commits."""
