"""``python -m pisasr.training.launch ...``: the launch wrapper's documented command (README, SLURM script).

The wrapper is a command-line program and lives in ``pisasr.cli.launch``; this module only runs it.
"""

if __name__ == "__main__":
    from pisasr.cli.launch import entry  # a command's entry point, not a dependency of the training package

    entry()
