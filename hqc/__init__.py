"""hqc: a PyTorch Lightning component kit for hybrid quantum-classical text classification."""

__version__ = "0.1.0"
