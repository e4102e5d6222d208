"""DriftCheck: the newest span against the previous one, before training."""
