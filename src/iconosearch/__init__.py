"""iconosearch: image–text search for heritage collections published through IIIF."""

__version__ = "0.1.0"
