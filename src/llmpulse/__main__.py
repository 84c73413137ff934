"""``python -m llmpulse``: the command line."""

from llmpulse.cli import main

main()
