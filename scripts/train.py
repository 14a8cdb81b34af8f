"""Train PiSA-SR: `accelerate launch scripts/train.py --config configs/<name>.yaml [key=value ...]`."""

from pisasr.cli.train import entry

if __name__ == "__main__":
    entry()
