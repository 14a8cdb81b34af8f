"""See `python preprocess/make_file_list.py --help`."""

from pisasr.cli.preprocess import entry, make_file_list_main

if __name__ == "__main__":
    entry(make_file_list_main)
