"""Helpers the tests share: paths, test models, certificates, fake APIs (no tests here)."""
