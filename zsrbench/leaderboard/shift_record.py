"""The attention-shift record: one JSON document per (model, protocol version, attack, ε, dataset), written
under the results folder next to the model's result records::

    <results>/<protocol>/v<version>/<model id>/attention/<attack>/eps<k>[__<variant>]/<dataset>.json

It carries what a result record carries about the model (:class:`~zsrbench.leaderboard.schema.ModelInfo`), the
attack with every parameter, ε, the seeded samples (their indices' digest), the map definition (normalisation,
size, text) and the per-image shifts with their mean and standard error. ``kind`` is ``attention_shift``, so
readers of result records (``zsrbench table --results-dir``, ``zsrbench validate``) tell it from one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from zsrbench.errors import ZsrError
from zsrbench.leaderboard.schema import AttackConfig, Env, ModelInfo, read_json

KIND = "attention_shift"
SCHEMA_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ShiftStats(_Strict):
    """Per-image ``‖A(x′) − A(x)‖₂`` (in the order of the sorted sample indices) and their mean ± standard error."""

    n: int = Field(ge=1)
    mean: float = Field(ge=0)
    se: float | None = Field(default=None, ge=0)  # s / √n; None for one image
    std: float | None = Field(default=None, ge=0)
    values: list[float]


class MapDefinition(_Strict):
    """How the maps were computed (see :mod:`zsrbench.defenses.attention`)."""

    map: str  # "text_guided_attention" (+ "complementary" for Comp-TGA)
    norm: str  # "token_axis" (the official code) | "per_token"
    size: int  # side of the upsampled map (224 as the official code)
    upsampling: str
    minmax: str
    text: str  # which text embedding guides the map
    templates_digest: str  # of the class prompts
    nonclass_template: str | None = None  # Comp-TGA's non-class prompt
    distance: str


class ShiftProtocol(_Strict):
    name: str
    version: int
    dataset: str
    split: str
    n_total: int
    n_samples: int
    seed: int
    indices_digest: str
    input_size: int
    eps: float = Field(gt=0, le=1)  # pixel units
    eps_text: str
    batch_size: int
    variant: str | None = None


class AttentionShiftRecord(_Strict):
    schema_version: Literal[1] = SCHEMA_VERSION
    kind: Literal["attention_shift"] = KIND
    zsrbench_version: str
    git_sha: str | None = None
    created_at: str
    model: ModelInfo
    base_model: str | None = None  # id of the protocol's undefended model (shown beside it in the figure)
    protocol: ShiftProtocol
    attack: AttackConfig
    adversary: str  # what x′ is
    map: MapDefinition
    shift: ShiftStats  # of the class map
    complementary_shift: ShiftStats | None = None  # of Comp-TGA's complementary map
    counts: dict[str, int] = Field(default_factory=dict)  # clean_correct, robust (of the n_samples)
    env: Env
    timing: dict[str, float] = Field(default_factory=dict)


def shift_path(results_dir: str | Path, record: AttentionShiftRecord) -> Path:
    from zsrbench.leaderboard.records import eps_dir, slug

    p = record.protocol
    folder = eps_dir(p.eps_text) + (f"__{slug(p.variant)}" if p.variant else "")
    return (Path(results_dir) / p.name / f"v{p.version}" / slug(record.model.id) / "attention"
            / slug(record.attack.name) / folder / f"{p.dataset}.json")


def to_json(record: AttentionShiftRecord) -> bytes:
    return (json.dumps(record.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n").encode()


def is_shift_document(data: Any) -> bool:
    """Whether parsed JSON ``data`` is an attention-shift record (not a result record)."""
    return isinstance(data, dict) and data.get("kind") == KIND


def parse_shift(data: Any, where: str | Path = "<record>") -> AttentionShiftRecord:
    if not is_shift_document(data):
        raise ZsrError(f"{where}: not an attention-shift record (its kind is not '{KIND}').")
    version = data.get("schema_version")
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise ZsrError(f"{where}: schema_version {version} was written by a newer zsrbench; upgrade zsrbench.")
    try:
        return AttentionShiftRecord.model_validate(data)
    except ValidationError as exc:
        from zsrbench.leaderboard.records import validation_message

        raise ZsrError(f"{where}: invalid attention-shift record: {validation_message(exc)}.") from exc


def read_shift(path: str | Path) -> AttentionShiftRecord:
    path = Path(path)
    return parse_shift(read_json(path, "attention-shift record"), path)


def check_shift_file(path: Path) -> list[str]:
    """Why the attention-shift record at ``path`` is bad (empty: it is good), for ``zsrbench validate``."""
    try:
        rec = read_shift(path)
    except ZsrError as exc:
        return [str(exc).removeprefix(f"{path}: ")]
    reasons = []
    for name, stats in (("shift", rec.shift), ("complementary_shift", rec.complementary_shift)):
        if stats is not None and len(stats.values) != stats.n:
            reasons.append(f"{name}.n is {stats.n} but it lists {len(stats.values)} values")
        if stats is not None and stats.n != rec.protocol.n_samples:
            reasons.append(f"{name}.n is {stats.n} but protocol.n_samples is {rec.protocol.n_samples}")
    if f"{round(rec.protocol.eps * 255, 6):g}/255" != rec.protocol.eps_text:
        reasons.append(f"protocol.eps {rec.protocol.eps} does not match eps_text {rec.protocol.eps_text}")
    return reasons
