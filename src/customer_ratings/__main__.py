"""``python -m customer_ratings`` runs the command line."""

from .cli import main

main()
