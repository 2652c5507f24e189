"""``python -m zsrbench.cli``: the command line."""

from zsrbench.cli.app import main

if __name__ == "__main__":
    main()
