"""slimserve: serve a model family's compressed variants side by side over the Open Inference Protocol."""

__version__ = "0.1.0"
