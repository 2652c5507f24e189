"""Evaluation (``zsrbench run``, ``bench``, ``sweep``): a checked plan, handed down stage by stage.

:mod:`.config` is what one evaluation is (:class:`~.config.RunConfig`) and checks every value of it into a
:class:`~.config.Plan` before anything is built; :mod:`.params` reads an attack suite's parameters; :mod:`.model`
loads the defense's model (a checkpoint, the shipped micro weights, or fine-tuned on demand); :mod:`.jobs` turns
the plan's datasets into jobs of work units (and finds what ``--resume`` can keep); :mod:`.unit` evaluates one
unit (clean pass, then each attack); :mod:`.units` stores and assembles units; :mod:`.ranks` spreads units over
torch.distributed ranks; :mod:`.records` writes the result records; :mod:`.runner` is the path through them.
:mod:`.summary` says what a run will do and how it ended; :mod:`.bench` times the runner beside the papers'
evaluation loop; :mod:`.sweep` (with :mod:`.sweep_grid`, :mod:`.sweep_jobs`) runs a grid of evaluations.
"""
