"""Convert the official PiSA-SR checkpoint: `python scripts/convert_official_ckpt.py pisa_sr.pkl out_dir`."""

from pisasr.cli.convert import entry

if __name__ == "__main__":
    entry()
