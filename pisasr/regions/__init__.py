"""Regions with their own lambda pair: maps on the latent grid (``maps``: ``LambdaMap``, ``RegionMap``,
``protect``), mask files and saved maps for the command line (``files``), the face detector (``faces``) and the
text detector (``text``: rapidocr, the optional ``[text]`` extra)."""

from pisasr.regions.maps import LambdaMap, RegionMap, protect

__all__ = ["LambdaMap", "RegionMap", "protect"]
