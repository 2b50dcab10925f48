"""Representation analysis: does fine-tuning collapse the pretrained representation?

``labels`` (geometry-only atom and edge classes), ``representations`` (node descriptors through
deepmd's inference API, DPA3 edge embeddings through a forward hook), ``metrics`` (t-SNE +
Davies-Bouldin, exact 1-Wasserstein), ``collapse`` (``oodbench analyze collapse``), ``plots``.
"""
