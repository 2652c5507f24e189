"""The result schema: one JSON record per (model, protocol, attack suite, ε, dataset).

Written once with pydantic; ``zsrbench/leaderboard/result.schema.json`` is its exported JSON Schema.
Numbers are numbers, never strings. Accuracies are fractions in [0, 1].
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelInfo(_Strict):
    id: str  # stable slug naming the evaluated model, e.g. "clip/ViT-B-32-quickgelu/openai"
    defense: str
    architecture: str
    pretrained: str | None = None
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    weights_sha256: str | None = None
    text_tower_sha256: str | None = None
    image_size: int
    hparams: dict[str, Any] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)


class AttackConfig(_Strict):
    name: str
    family: str
    params: dict[str, Any] = Field(default_factory=dict)


class ProtocolInfo(_Strict):
    name: str
    version: int
    dataset: str
    split: str
    n_total: int
    n_samples: int
    seed: int
    indices_digest: str
    templates: list[list[str]]
    templates_digest: str
    input_mode: str
    input_size: int
    logit_scale: float
    eps: float = Field(gt=0, le=1)  # pixel units
    eps_text: str  # "k/255"
    suite: str
    attacks: list[AttackConfig]
    precision: str
    success_criterion: str
    settings: dict[str, Any] = Field(default_factory=dict)  # the protocol's full expanded settings


class Metrics(_Strict):
    n: int = Field(ge=0)
    num_classes: int = Field(ge=1)
    chance: float = Field(ge=0, le=1)
    clean_accuracy: float = Field(ge=0, le=1)
    robust_accuracy: float = Field(ge=0, le=1)  # worst case over the suite
    per_attack: dict[str, float] = Field(default_factory=dict)  # robust accuracy of each attack alone
    clean_normalised: float
    robust_normalised: float

    @model_validator(mode="after")
    def _robust_le_clean(self) -> "Metrics":
        if self.robust_accuracy > self.clean_accuracy + 1e-12:
            raise ValueError("robust_accuracy exceeds clean_accuracy")
        return self


class Flags(_Strict):
    fallbacks: list[str] = Field(default_factory=list)
    autoattack_warnings: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


class Env(_Strict):
    python: str
    torch: str
    open_clip: str | None = None
    pyautoattack: str | None = None
    device: str
    platform: str


class Sidecar(_Strict):
    file: str  # relative to the record
    sha256: str


class ResultRecord(_Strict):
    schema_version: Literal[1] = SCHEMA_VERSION
    kind: Literal["measured"] = "measured"
    zsrbench_version: str
    git_sha: str | None = None
    created_at: str  # ISO 8601, UTC
    model: ModelInfo
    protocol: ProtocolInfo
    metrics: Metrics
    flags: Flags = Field(default_factory=Flags)
    env: Env
    sidecar: Sidecar | None = None
    timing: dict[str, float] = Field(default_factory=dict)  # seconds, images/s
