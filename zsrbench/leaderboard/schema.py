"""The result schema: one JSON record per (model, protocol, attack suite, ε, dataset).

Written once with pydantic; ``zsrbench/leaderboard/result.schema.json`` is its exported JSON Schema.
Numbers are numbers, never strings. Accuracies are fractions in [0, 1].
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, model_validator

from zsrbench.errors import ZsrError


def read_json(path: Path, what: str) -> Any:
    """The JSON content of ``path``; a :class:`ZsrError` naming ``what`` it should be when it cannot be read, or
    when it holds a duplicate key or nests absurdly deep (:mod:`zsrbench.jsonio`)."""
    from zsrbench.jsonio import read

    return read(path, f"JSON {what}")

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
    weights_sha256: str | None = None  # sha256 of the weights file's bytes (a file can differ for equal tensors)
    tensors_sha256: str | None = None  # canonical digest of the model's tensors (sorted names, dtype, shape, bytes)
    text_tower_sha256: str | None = None
    image_size: int
    hparams: dict[str, Any] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)  # the defense's notes and its training's
    # where the defense's code comes from: {"kind": "built-in"} | {"kind": "plugin", "package", "version",
    # "entry_point"} | {"kind": "code", "module"}; None in records written before it was recorded
    origin: dict[str, str] | None = None
    # a defense that acts at inference: {"defense": name, "params": {...}} (part of the id); None: weights only
    inference: dict[str, Any] | None = None


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
    batch_size: int | None = None  # evaluation batch: AutoAttack's Square attacks a batch's survivors jointly
    subset: str | None = None  # a named subset of the protocol's evaluation set (None: the full set)
    settings: dict[str, Any] = Field(default_factory=dict)  # the protocol's full expanded settings
    # the settings of this run that differ from the protocol's and change the per-sample flags (seed, batch,
    # precision, sample count, attack parameters), as a name part of the record's folder; None: the protocol's
    variant: str | None = None
    # a test-time defense: how it was attacked ({"mode": "adaptive" | "non-adaptive", "label", "test_time": its
    # declared steps}); None for a defense with no test-time steps (see zsrbench.evaluation.adaptive)
    attack_mode: dict[str, Any] | None = None
    skipped_files: list[str] = Field(default_factory=list)  # images left out because they do not decode
    # the class text head the logits used: its digest and where it came from ("computed", or zsrbench's cache
    # with its digest and recomputed rows checked); None in records written before it was recorded
    text_head: dict[str, str] | None = None


class Metrics(_Strict):
    n: int = Field(ge=0)
    num_classes: int = Field(ge=1)
    chance: float = Field(ge=0, le=1)
    clean_accuracy: float = Field(ge=0, le=1)
    robust_accuracy: float = Field(ge=0, le=1)  # worst case over the suite
    per_attack: dict[str, float] = Field(default_factory=dict)  # robust accuracy of each attack alone
    clean_normalised: float
    robust_normalised: float
    # samples whose logits were NaN/inf, clean or under an attack: counted neither correct nor robust
    n_nonfinite: int = Field(default=0, ge=0)

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
    compiled: bool = False  # the classifier ran through torch.compile


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


# ------------------------------------------------------------------------------------------------------------
# Leaderboard entries: one JSON file per revision of (model × attack suite × ε) under one protocol version.
# ------------------------------------------------------------------------------------------------------------

ENTRY_SCHEMA_VERSION = 1


class EntryProtocol(_Strict):
    """The protocol an entry was measured (or reported) under; entries of different versions never share a column."""

    name: str
    version: int = Field(ge=0)
    datasets: list[str]  # the protocol's datasets, in column order
    train_dataset: str | None = None  # excluded from the zero-shot average
    normalised_average: bool = False  # averages use (acc - chance) / (1 - chance)
    # a named, seeded subset of the protocol's evaluation sets (e.g. micro's "quick": 64 per task); None: the
    # full sets. Entries of a subset are their own entries (slug suffix ``__<subset>``) and are never ranked.
    subset: str | None = None
    # settings that differ from the protocol's standard evaluation (attack parameters, seed, precision, sample
    # count, batch; ProtocolInfo.variant): an experiment, its own entry (slug suffix ``__variant-<name>``), never
    # a revision of the standard one and never ranked. None: the protocol's standard evaluation.
    variant: str | None = None


class EntryModel(_Strict):
    id: str  # measured: ModelInfo.id; reported: "reported:<source_id>:<method>"
    name: str  # the row label
    defense: str | None = None
    architecture: str | None = None
    checkpoint_sha256: str | None = None
    tensors_sha256: str | None = None  # canonical digest of the model's tensors (the model's identity)
    description: str | None = None  # reported: what the source says the model is
    origin: dict[str, str] | None = None  # measured: where the defense's code comes from (ModelInfo.origin)
    inference: dict[str, Any] | None = None  # measured: the defense's inference settings (ModelInfo.inference)


class FileRef(_Strict):
    path: str  # relative to the entry's directory (or to the results directory for a raw view)
    sha256: str


class DatasetMeasurement(_Strict):
    """One dataset of a measured entry: a summary of its result record, and the record + flags it came from."""

    record: FileRef
    sidecar: FileRef
    measured_at: str  # the record's created_at
    zsrbench_version: str
    git_sha: str | None = None
    n_samples: int = Field(ge=0)
    indices_digest: str
    metrics: Metrics
    flags: Flags = Field(default_factory=Flags)
    deviations: list[str] = Field(default_factory=list)  # settings that differ from the protocol's


class MeasuredData(_Strict):
    attacks: list[AttackConfig]
    precision: str
    seed: int
    datasets: dict[str, DatasetMeasurement]


class ReportedNumbers(_Strict):
    """Published numbers, in percent exactly as printed by the source."""

    per_dataset: dict[str, float] = Field(default_factory=dict)
    average: float | None = None  # the printed average (what people cite)
    average_scope: Literal["all", "zero-shot"] = "all"
    per_dataset_mean: float | None = None  # mean of per_dataset, computed at import (shows inconsistencies)
    notes: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _percent(self) -> "ReportedNumbers":
        for k, v in [*self.per_dataset.items(), ("average", self.average)]:
            if v is not None and not 0 <= v <= 100:
                raise ValueError(f"{k}: {v} is not a percentage in [0, 100]")
        return self


class ReportedData(_Strict):
    source: str  # full citation
    source_id: str  # short stable key, e.g. "tga-zsr-neurips24"
    method: str
    attack: str  # as printed by the source, e.g. "pgd100"
    attack_description: str | None = None
    unit: Literal["percent"] = "percent"
    clean: ReportedNumbers | None = None
    robust: ReportedNumbers | None = None
    imported_from: str | None = None
    notes: list[str] = Field(default_factory=list)
    # set when the source no longer lists these numbers (e.g. a corrected file moved them to another attack):
    # the entry stays in the history but is not shown in tables
    withdrawn: str | None = None


Verdict = Literal["pass", "warn", "fail", "n/a"]  # n/a: the check had nothing to look at
NA = "n/a"
VERDICTS = (NA, "pass", "warn", "fail")  # from best to worst; n/a: nothing to judge


def worst(verdicts: Sequence[str]) -> str:
    """The worst of ``verdicts`` (``n/a`` < ``pass`` < ``warn`` < ``fail``); ``n/a`` for none."""
    return max(verdicts, key=VERDICTS.index, default=NA)


class AuditCheck(_Strict):
    """One evaluation-validity check of an audit, overall and per dataset, with the numbers behind it."""

    name: str  # e.g. "gradient_health", "randomness", "eps_behaviour", "convergence", "fgsm_vs_pgd", "black_box"
    title: str
    verdict: Verdict
    summary: str  # one line with the numbers that decided the verdict
    per_dataset: dict[str, dict[str, Any]] = Field(default_factory=dict)  # numbers + "verdict" per dataset
    # sample indices (positions in the protocol's test set) the check lists, e.g. broken by a black-box
    # attack while the white-box suite left them robust
    samples: dict[str, list[int]] = Field(default_factory=dict)
    thresholds: dict[str, float] = Field(default_factory=dict)


class AuditData(_Strict):
    """The evaluation-validity audit of one model under one protocol version at one ε."""

    verdict: Verdict  # the worst of the checks' (each the worst of its datasets'); n/a: nothing was checked
    randomised: bool = False  # repeated forward passes disagree: evaluate with EOT
    failed: list[str] = Field(default_factory=list)  # names of the failed checks
    warned: list[str] = Field(default_factory=list)
    checks: list[AuditCheck]
    settings: dict[str, Any] = Field(default_factory=dict)  # samples, seed, attacks and tolerances used
    base_model: str | None = None  # the undefended model transfer attacks came from
    # per dataset: n, indices digest, clean-correct count, chance; "carried_from": "rNNNN" for a dataset this
    # revision did not audit itself but kept from an earlier one (a narrower re-audit never drops evidence)
    datasets: dict[str, Any] = Field(default_factory=dict)
    # per dataset: the worst of the checks' verdicts on it; what a ranking on those datasets rests on (empty in
    # audits written before verdicts were kept per dataset: derived from the checks' rows when read)
    dataset_verdicts: dict[str, Verdict] = Field(default_factory=dict)
    env: dict[str, Any] = Field(default_factory=dict)
    timing: dict[str, float] = Field(default_factory=dict)


class PreviousRevision(_Strict):
    revision: int = Field(ge=1)
    file: str  # relative to the entry's directory
    sha256: str  # of the previous revision's file: history cannot be rewritten unnoticed


class LeaderboardEntry(_Strict):
    """One revision of a leaderboard entry. Files are immutable: a new measurement adds a revision."""

    schema_version: Literal[1] = ENTRY_SCHEMA_VERSION
    kind: Literal["measured", "reported", "audit"]
    entry: str  # the entry's slug (its directory name)
    revision: int = Field(ge=1)
    created_at: str  # ISO 8601, UTC
    previous: PreviousRevision | None = None
    changes: list[str] = Field(default_factory=list)  # what changed vs the previous revision
    protocol: EntryProtocol
    model: EntryModel
    suite: str  # zsrbench's attack suite ("pgd", "pgd+cw"); reported: the equivalent suite, else the printed name
    eps: float | None = Field(default=None, gt=0, le=1)  # pixel units; None for clean-only reported numbers
    eps_text: str | None = None
    zsrbench_version: str
    measured: MeasuredData | None = None
    reported: ReportedData | None = None
    audit: AuditData | None = None  # kind "audit": suite is "audit"
    digest: str = ""  # sha256 of the canonical JSON of every other field

    @model_validator(mode="after")
    def _payload(self) -> "LeaderboardEntry":
        payloads = {"measured": self.measured, "reported": self.reported, "audit": self.audit}
        if payloads[self.kind] is None or any(v is not None for k, v in payloads.items() if k != self.kind):
            raise ValueError(f"a {self.kind} entry needs '{self.kind}' and none of the other payloads")
        if (self.eps is None) != (self.eps_text is None):
            raise ValueError("eps and eps_text go together")
        return self


SCHEMA_FILES: dict[str, type[BaseModel]] = {"result.schema.json": ResultRecord, "entry.schema.json": LeaderboardEntry}


def json_schemas() -> dict[str, str]:
    """The JSON Schema files' text, by file name (committed next to this module; a test checks they match)."""
    import json

    out = {}
    for name, model in SCHEMA_FILES.items():
        schema = model.model_json_schema()
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": f"zsrbench/{name}", **schema}
        out[name] = json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return out


def write_json_schemas(directory: str | None = None) -> list[str]:
    """Regenerate ``zsrbench/leaderboard/*.schema.json`` (``python -m zsrbench.leaderboard.schema``)."""
    from pathlib import Path

    d = Path(directory) if directory else Path(__file__).parent
    written = []
    for name, text in json_schemas().items():
        (d / name).write_text(text)
        written.append(str(d / name))
    return written


if __name__ == "__main__":  # pragma: no cover
    for p in write_json_schemas():
        print(p)
