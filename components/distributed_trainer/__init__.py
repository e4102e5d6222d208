"""The Trainer on several machines: TFX's Trainer executor run as replicas under
MultiWorkerMirroredStrategy, as processes on this machine (local_workers) or as a
Training Operator TFJob (tfjob); executor.Executor launches them."""
