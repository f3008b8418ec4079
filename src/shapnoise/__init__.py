"""SHAP noise images for robust MNIST classifiers, as a DVC pipeline."""

__version__ = "0.1.0"
