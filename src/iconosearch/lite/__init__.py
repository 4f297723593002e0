"""Building the default model, iconosearch-lite: corpora, splits, feature extraction, training, model card.

Depends on the runtime (:mod:`iconosearch.models`) and on :mod:`iconosearch.training`; nothing in the
runtime imports this package, so serving and indexing never load training code.
"""
