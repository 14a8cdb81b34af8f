"""See `python preprocess/extract_prompts.py --help`."""

from pisasr.cli.preprocess import entry, extract_prompts_main

if __name__ == "__main__":
    entry(extract_prompts_main)
