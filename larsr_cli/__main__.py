"""``python -m larsr_cli``: the same command as ``larsr``, for environments without the script."""

from .entry import main

main()
