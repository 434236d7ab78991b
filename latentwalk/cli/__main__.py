"""``python -m latentwalk.cli`` runs the CLI (as ``python -m latentwalk`` does)."""

from latentwalk.cli import main

if __name__ == "__main__":
    main()
