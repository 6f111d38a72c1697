"""`python -m inspector` runs the wwinspect command line."""

from inspector.cli import main

main()
