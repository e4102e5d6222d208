"""Code that runs inside Transform and Trainer: tokenizer, checkpoint, model, export.

Nothing here imports ``pipeline``: these modules receive plain dictionaries
(``custom_config``) and TFX ``FnArgs``, so they run the same under every runner.
"""
import os

# Hugging Face TF models need Keras 2 (tf-keras); must be set before TF loads.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
