"""Score SR images: `python scripts/evaluate.py --sr DIR --gt DIR [--metrics ...] [--out results.json]`."""

from pisasr.cli.evaluate import entry

if __name__ == "__main__":
    entry()
