"""Datasets, the image containers every component passes around, and site partitions."""

from synthlearn.data.types import AttributeInfo, Dataset, ImageData

__all__ = ["AttributeInfo", "Dataset", "ImageData"]
