"""streamdrift: drift and outlier monitoring for ML models on Kafka streams."""

__version__ = "0.1.0"

__all__ = ["__version__"]
