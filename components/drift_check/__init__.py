"""DriftCheck: the newest span against the last accepted one, before training."""
