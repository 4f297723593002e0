"""Retrieval evaluation: metrics, paired bootstrap, image–caption pairs and their split, reports."""
