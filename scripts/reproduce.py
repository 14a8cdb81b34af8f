"""Reproduce the paper's tables: `python scripts/reproduce.py --data_root DIR --base MODEL --weights CKPT`."""

from pisasr.cli.reproduce import entry

if __name__ == "__main__":
    entry()
