"""IIIF documents → records: pure parsers (Presentation 2.1/3.0, Image API 1–3, Change Discovery).

Also the local-folder builder (Presentation 3 + an Image API 3.0 service, level 2 as served).
"""
