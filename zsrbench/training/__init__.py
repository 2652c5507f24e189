"""Training: the one adversarial fine-tuning loop every trained defense uses.

It knows no defense by name: the defense supplies its hyper-parameters (:class:`~zsrbench.defenses.base.TrainHparams`:
optimiser, schedule, budget, training adversary, precision, training classifier) and its loss
(:meth:`~zsrbench.defenses.base.Defense.loss`). The loop

* builds the base CLIP, trains **only the visual encoder** (text tower, logit scale and the frozen copy of the
  original visual encoder never change; the class head comes from the original text tower);
* draws batches from the protocol's training set in a seeded order (one permutation per epoch);
* sets the learning rate per step (linear warm-up ``lr·(s+1)/warmup`` then cosine to 0, as TeCoA/open_clip);
* runs the loss under autocast on CUDA (bf16, or fp16 with a GradScaler) and in fp32 on CPU;
* zeroes parameter gradients between the attack and the backward pass (the adversary takes input gradients
  only, so nothing from the attack can reach the update; the original codes leave the attack's parameter
  gradients in ``.grad``, divided by the fp16 loss scale under AMP: a small, non-zero leak);
* draws the training attack's random starts from its own seeded generator (fresh per step; a defense's
  ``reseed_training_attack`` re-seeds it before every attack, as the official Comp-TGA code does);
* checkpoints every epoch (or every N steps) with model, optimiser, scheduler, GradScaler, all RNG states,
  the step and the data-order position, and resumes from the last checkpoint exactly (CPU: bit-identical);
* keeps the final weights (no selection on test data) and writes an open_clip ``local-dir`` folder
  (``open_clip_config.json`` + ``open_clip_model.safetensors`` with the FULL CLIP state dict) and a
  ``manifest.json`` (defense, hyper-parameters with quirk choices, protocol, data, seed, steps, versions,
  sha256 of the weights, the loss curve).

The package, by stage: :mod:`.setup` (the checked request, then the models and data), :mod:`.schedule` (optimiser
and learning rate), :mod:`.batches` (data order and transforms), :mod:`.checkpoint` (save and resume),
:mod:`.loop` (the steps), :mod:`.outputs` (the folder and its manifest), :mod:`.determinism` (pinned threads),
:mod:`.on_demand` (defenses fine-tuned on demand and cached).
"""

from zsrbench.training.loop import StopTraining, TrainResult, train_defense
from zsrbench.training.on_demand import ensure_trained

__all__ = ["StopTraining", "TrainResult", "ensure_trained", "train_defense"]
