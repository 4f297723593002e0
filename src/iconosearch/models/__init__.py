"""Models at run time: spec strings, text towers, embedders (open_clip and the embedded iconosearch-lite).

Import the submodules directly; this package imports nothing, so ``iconosearch --help`` stays fast and no
module of it is in an import cycle through this file. Building the default model is :mod:`iconosearch.lite`.
"""
