"""EchoCem: segmentation of ultrasonic cement images and monotone transport models."""

__version__ = "0.1.0"
