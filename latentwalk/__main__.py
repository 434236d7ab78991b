"""``python -m latentwalk`` runs the CLI."""

from latentwalk.cli import main

if __name__ == "__main__":
    main()
