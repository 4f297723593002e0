"""IIIF documents → records: pure parsers (Presentation 2.1/3.0, Image API 1–3, Change Discovery).

Also the local-folder builder (static Presentation 3 + level-0 Image API).
"""
