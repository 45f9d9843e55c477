"""Thin script: `python experiments/train.py ppo --env safe_cartpole --steps 60000` == `saferl train ...`."""

import sys

from saferl.cli.main import main

if __name__ == "__main__":
    main(["train", *sys.argv[1:]])
