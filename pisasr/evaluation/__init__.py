"""Evaluation: pyiqa metrics over a folder of results (``metrics``) and the paper's tables (``reproduce``)."""
