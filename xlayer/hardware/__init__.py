"""Hardware layer: typed specs and the catalog of real parts."""
from xlayer.hardware.catalog import accelerator_names, get_accelerator, load_catalog
from xlayer.hardware.spec import Accelerator, Link, MemoryLevel, System

__all__ = ["Accelerator", "Link", "MemoryLevel", "System", "accelerator_names",
           "get_accelerator", "load_catalog"]
