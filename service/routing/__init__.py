"""Experiments: A/B routing, shadow traffic, ground-truth feedback and the verdict."""
