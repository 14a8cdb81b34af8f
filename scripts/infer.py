"""Super-resolve images with PiSA-SR. See `python scripts/infer.py --help`."""

from pisasr.cli.infer import entry

if __name__ == "__main__":
    entry()
