"""An example zsrbench plugin (see docs/plugins.md in zsrbench), registered through the entry points of its
pyproject.toml:

* ``blur_clip`` (defenses.py): CLIP that sees a 3×3 box-blurred image, an input-transformation defense;
* ``mixed_at`` (defenses.py): a trainable defense, adversarial fine-tuning on a mix of adversarial and clean
  cross-entropy, with its own hyper-parameter ``clean_weight``;
* ``noise`` (attacks.py): random corners of the ε-ball, with one parameter ``tries``;
* ``stripes`` (data.py): a generated dataset of horizontal and vertical stripes;
* ``stripes_demo`` (data.py): a protocol evaluating ``stripes`` and ``synthetic_shapes`` on the tiny model.

Nothing is imported here: zsrbench imports each module only when its entry is first used.
"""
