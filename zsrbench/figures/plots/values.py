"""The numbers a plot draws, as the tables compute them (:mod:`zsrbench.leaderboard.rows`): an entry's clean or
robust accuracy on one dataset (Wilson interval) or averaged over its protocol's datasets (stratified bootstrap
interval), the axis label that says which, and an ε as a number."""

from __future__ import annotations

from dataclasses import dataclass

from zsrbench.errors import ZsrError
from zsrbench.leaderboard.schema import LeaderboardEntry

AVERAGES = ("zero-shot", "all")


@dataclass(frozen=True)
class Value:
    """An accuracy (a fraction; a normalised average may be below 0) and its 95% interval."""

    value: float
    lo: float | None
    hi: float | None


def average_datasets(e: LeaderboardEntry, average: str) -> list[str]:
    """The datasets an average runs over: the protocol's, without the source task for ``zero-shot``."""
    if average not in AVERAGES:
        raise ZsrError(f"--average takes {' or '.join(AVERAGES)}; got {average!r}.")
    ds = list(e.protocol.datasets)
    train = e.protocol.train_dataset
    return [d for d in ds if d != train] if average == "zero-shot" and train in ds else ds


def accuracy(e: LeaderboardEntry, metric: str, *, average: str = "zero-shot", dataset: str | None = None
             ) -> Value | None:
    """``metric`` ("clean" or "robust") of entry ``e``: on one ``dataset`` (Wilson interval) or averaged over its
    protocol's datasets (normalised when the protocol averages normalised accuracies; stratified bootstrap
    interval). None when the entry lacks a dataset the number needs."""
    from zsrbench.leaderboard import rows

    assert e.measured is not None
    ms = e.measured.datasets
    if dataset is not None:
        m = ms.get(dataset)
        if m is None:
            return None
        return Value(getattr(m.metrics, f"{metric}_accuracy"), *rows.dataset_interval(m, metric))
    cols = average_datasets(e, average)
    if not cols or any(d not in ms for d in cols):
        return None
    norm = e.protocol.normalised_average
    attr = f"{metric}_normalised" if norm else f"{metric}_accuracy"
    value = sum(getattr(ms[d].metrics, attr) for d in cols) / len(cols)
    return Value(value, *rows.average_interval([ms[d] for d in cols], metric, norm))


def metric_label(e: LeaderboardEntry, metric: str, *, average: str, dataset: str | None) -> str:
    if dataset is not None:
        return f"{metric} accuracy on {dataset} (%)"
    norm = " normalised" if e.protocol.normalised_average else ""
    scope = "zero-shot average" if average == "zero-shot" and e.protocol.train_dataset in e.protocol.datasets \
        else "average"
    return f"{metric}: {scope} of{norm} accuracy (%)"


def eps_value(text: str | None) -> float:
    from zsrbench.eps import parse_eps

    return float(parse_eps(text))  # type: ignore[arg-type]
