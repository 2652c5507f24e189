"""Evaluation protocols: which datasets, ε, attack settings and model defaults make numbers comparable."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from zsrbench.registry import PROTOCOLS


@dataclass(frozen=True)
class Protocol:
    name: str
    version: int
    description: str
    datasets: tuple[str, ...]
    eps: float = 1.0  # in units of 1/255
    eps_sweep: tuple[float, ...] = ()
    train_dataset: str | None = None  # the source task (also the first evaluation column)
    default_model: str = "ViT-B-32-quickgelu"
    default_pretrained: str | None = "openai"
    needs_data_root: bool = True
    n_samples: int | None = None  # None: full evaluation sets
    batch_size: int = 64  # evaluation batch (AutoAttack's Square costs ~5000 queries per batch: bigger is cheaper)
    seed: int = 0
    attack_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    normalised_average: bool = False  # average normalised accuracy (acc-chance)/(1-chance) in tables
    # Fine-tuning: hyper-parameters every defense trained under this protocol shares (optimiser, lr, steps,
    # batch, training adversary); each defense keeps its own loss weights. With ``train_on_demand``,
    # `zsrbench run --defense X` fine-tunes X (once, cached) when no checkpoint is given.
    train_recipe: dict[str, Any] = field(default_factory=dict)
    train_on_demand: bool = False
    # Ranking: a model is ranked only when it was evaluated with every suite named here (at that ε) and its
    # validity audit passed; its ranking number is the per-sample worst case over every suite measured.
    required_suites: tuple[str, ...] = ()
    # The undefended model transfer attacks of the audit come from (defense "clip" on the default model).
    base_model: str | None = "clip"
    # Named, seeded subsets of the evaluation sets: name -> samples per dataset. ``default_subset`` is what
    # `zsrbench run` evaluates when no --subset is given (None: the full sets, which rankings use).
    subsets: dict[str, int] = field(default_factory=dict)
    default_subset: str | None = None
    # What the protocol is when its numbers are not evidence about methods (a generated proxy, a smoke test):
    # every leaderboard table of the protocol says so under its title. None: a protocol of real data.
    proxy: str | None = None

    def settings(self) -> dict[str, Any]:
        d = asdict(self)
        d["datasets"] = list(self.datasets)
        d["eps_sweep"] = list(self.eps_sweep)
        d["required_suites"] = list(self.required_suites)
        return d

    def zero_shot_datasets(self) -> tuple[str, ...]:
        return tuple(d for d in self.datasets if d != self.train_dataset)


TGA16_DATASETS = (
    "tinyimagenet", "cifar10", "cifar100", "stl10", "sun397", "food101", "oxford_pets", "flowers102",
    "dtd", "eurosat", "fgvc_aircraft", "imagenet", "caltech101", "caltech256", "stanford_cars", "pcam",
)

PAPER_ATTACKS = {
    "pgd": {"steps": 100, "step": 1.0},
    "cw": {"steps": 100, "step": 1.0, "kappa": 50.0},
}

register = PROTOCOLS.add

register(
    "tga16",
    Protocol(
        name="tga16",
        version=1,
        description="16 zero-shot datasets of TeCoA/PMG-AFT/TGA-ZSR/Comp-TGA, ViT-B/32, eps 1/255",
        datasets=TGA16_DATASETS,
        eps=1.0,
        eps_sweep=(1.0, 2.0, 4.0),
        train_dataset="tinyimagenet",
        attack_defaults=PAPER_ATTACKS,
        required_suites=("pgd", "aa-lite"),  # the papers' headline attacks; autoattack welcome
    ),
)

register(
    "fare",
    Protocol(
        name="fare",
        version=1,
        description="RobustVLM protocol: aa-fare at eps 2/255 and 4/255, first 1000 samples after a seeded shuffle",
        datasets=tuple(d for d in TGA16_DATASETS if d != "tinyimagenet"),
        eps=2.0,
        eps_sweep=(2.0, 4.0),
        default_model="ViT-L-14-quickgelu",
        train_dataset="imagenet",  # FARE fine-tunes on ImageNet: the zero-shot average leaves it out
        n_samples=1000,
        attack_defaults=PAPER_ATTACKS,
        required_suites=("aa-fare",),
    ),
)

register(
    "synthetic",
    Protocol(
        name="synthetic",
        version=1,
        description="tiny generated images of a few coloured shapes; offline smoke test of the whole path",
        datasets=("synthetic_shapes", "synthetic_colors"),
        eps=1.0,
        default_model="zsr-tiny",
        default_pretrained=None,
        needs_data_root=False,
        train_dataset="synthetic_shapes",
        attack_defaults={"pgd": {"steps": 10, "step": 1.0}, "cw": {"steps": 10, "step": 1.0, "kappa": 50.0}},
        train_recipe={"steps": 2, "batch_size": 16, "warmup_steps": 1, "lr": 1e-4, "epochs": None},
        train_on_demand=True,
        required_suites=("pgd",),
        base_model=None,  # a randomly initialised model: there is no undefended base to transfer from
        proxy="a smoke test of zsrbench's code path on tiny generated images, not evidence about methods",
    ),
)


def get_protocol(name: str) -> Protocol:
    return PROTOCOLS.get(name)
