"""Export trained adapters: `python scripts/export.py --config CFG --weights W --to FORMAT -o OUT`."""

from pisasr.cli.export import entry

if __name__ == "__main__":
    entry()
