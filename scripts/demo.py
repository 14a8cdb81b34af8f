"""Interactive PiSA-SR demo with live lambda sliders. See `python scripts/demo.py --help`."""

from pisasr.cli.demo import entry

if __name__ == "__main__":
    entry()
