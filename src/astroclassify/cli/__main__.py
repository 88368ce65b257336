"""``python -m astroclassify.cli``."""

from astroclassify.cli.app import main

main()
