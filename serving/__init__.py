"""Serving: a TF Serving-compatible local server, clients, and deployment files.

Nothing here imports TFX; the server needs only TensorFlow (and tensorflow-text for
models that tokenize in the graph).
"""
