"""``python -m zsrbench`` (and ``torchrun ... -m zsrbench run ...``): the command line."""

from zsrbench.cli import app

if __name__ == "__main__":
    app(prog_name="zsrbench")
