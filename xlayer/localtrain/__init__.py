"""Local learning with backward links (BackLink) and its baselines, measured.

Modules: ``nets`` (CIFAR ResNets as unit lists, published splits), ``heads`` (auxiliary
heads), ``methods`` (one training step for every method), ``data`` (Fashion-MNIST, CIFAR-10,
synthetic), ``measure`` (memory and per-module times), ``pipeline`` (runtime simulator),
``train`` (training loop with resume) and ``cli`` (``xlayer localtrain ...``).
Import torch-dependent modules explicitly; this package import is cheap.
"""
