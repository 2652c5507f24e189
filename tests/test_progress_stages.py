"""The progress display says which attack, and which AutoAttack stage, each dataset is in, and how many samples
are still unbroken."""

from __future__ import annotations

from zsrbench.evaluation import ranks, runner
from zsrbench.evaluation.config import RunConfig
from zsrbench.evaluation.stages import UnitStages

AA_LOG = ["using standard version including apgd-ce, apgd-t, fab-t, square.", "initial accuracy: 100.00%",
          "running apgd-ce", "apgd-ce - 1/1 - 20 out of 64 successfully perturbed",
          "robust accuracy after APGD-CE: 68.75% (total time 3.1 s)", "running apgd-t",
          "robust accuracy after APGD-T: 50.00% (total time 9.0 s)", "running square"]


def test_stage_texts_from_autoattacks_log():
    said = []
    stages = UnitStages(said.append)
    stages.message("running apgd-ce")  # before any attack started: ignored
    stages.attack("autoattack", 64)
    for m in AA_LOG:
        stages.message(m)
    assert said == ["autoattack · 64/64 left", "autoattack · 64/64 left", "autoattack: APGD-CE · 64/64 left",
                    "autoattack: APGD-CE · 44/64 left", "autoattack: APGD-T · 44/64 left",
                    "autoattack: APGD-T · 32/64 left", "autoattack: SQUARE · 32/64 left"]


def test_a_run_reports_every_attack_and_stage(tmp_path, monkeypatch):
    seen: list[tuple[str, str]] = []
    monkeypatch.setattr(ranks.Progress, "stage", lambda self, dataset, text: seen.append((dataset, text)))
    cfg = RunConfig(protocol="synthetic", datasets=("synthetic_shapes",), attacks=("pgd", "aa-lite"),
                    attack_params={"steps": 2, "aa-lite.n_iter": 3}, n_samples=16, batch_size=16,
                    leaderboard_dir=None, device="cpu", jobs=1, results_dir=str(tmp_path))
    runner.run(cfg, progress=False)
    texts = [t for d, t in seen if d == "synthetic_shapes"]
    assert texts[0].startswith("pgd · ")
    assert any(t.startswith("aa-lite: APGD-CE · ") for t in texts)
    assert any(t.startswith("aa-lite: APGD-DLR · ") for t in texts)


def test_ranks_share_their_stages_through_the_store(tmp_path, monkeypatch):
    """With several ranks, a rank's stage text goes through the group's store and rank 0's display shows it."""
    import torch.distributed as dist

    store = dist.FileStore(str(tmp_path / "store"), 1)
    monkeypatch.setattr(ranks, "_store", lambda: store)
    progress = ranks.Progress(ranks.World(rank=0, size=2), {"micro_color": 64}, True, lambda d: f"{d} [autoattack]")
    with progress:
        progress.stage("micro_color", "autoattack: FAB-T · 12/40 left")
        progress.advance("micro_color", 8)
        progress._refresh()
        task = progress._bar.tasks[0]
        assert task.description == "micro_color [autoattack] autoattack: FAB-T · 12/40 left"
        assert task.completed == 8
