"""mgvm: motion-guided token masking and token dropout for video transformers in JAX/Flax."""

__version__ = "0.1.0"
