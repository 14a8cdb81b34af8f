"""Regions with their own lambda pair: maps on the latent grid (``maps``: ``LambdaMap``, ``RegionMap``), automatic
regions (``detection``: ``protect``), mask files and saved maps for the command line (``files``), the face detector
(``faces``) and the text detector (``text``: rapidocr, the optional ``[text]`` extra)."""

from pisasr.regions.detection import protect
from pisasr.regions.maps import LambdaMap, RegionMap

__all__ = ["LambdaMap", "RegionMap", "protect"]
