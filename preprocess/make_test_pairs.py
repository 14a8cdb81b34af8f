"""See `python preprocess/make_test_pairs.py --help`."""

from pisasr.cli.preprocess import entry, make_test_pairs_main

if __name__ == "__main__":
    entry(make_test_pairs_main)
