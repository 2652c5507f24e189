"""The ``micro`` protocol: a small offline benchmark built by zsrbench itself (generated captioned scenes,
a tiny CLIP pretrained on them, one source task and held-out zero-shot tasks).

Importing this package registers the ``micro_*`` datasets and the ``micro`` protocol (nothing is generated
or loaded until used).
"""

from zsrbench.micro import protocol, tasks  # noqa: F401
