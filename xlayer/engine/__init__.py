"""The cost engine: model + system + layout (scalar or arrays) + recipe → a typed
:class:`~xlayer.engine.result.IterationCost` (training.py), the same on arrays of layouts
(vectorized.py), and the one layout chooser (choose.py)."""
