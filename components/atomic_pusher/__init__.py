"""AtomicPusher: TFX's Pusher, each version staged, verified, then renamed into place."""
