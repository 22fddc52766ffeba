"""Parallel tuning (cnn.tune_workers): workers sharing one Optuna study, orphan recovery after a
SIGKILL, the trial budget, out-of-fold predictions, one worker = the sequential search, and the
DAG (the gather waits for every worker; the SLURM profile submits one job per worker)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from optuna.storages.journal._storage import JournalOperation  # (the journal's entry kinds)

from conftest import REPO
from cnn_data import CLASSES, write_cohort
from sts.cli import main
from sts.cnn.pack import load_packed, pack
from sts.cnn.study import RETRY_OF, SURPLUS, WORKER, claim, data_key, finished, open_study, recover_orphans
from sts.cnn.tune import TuneSettings, oof_path, tune, tune_gather, tune_worker
from sts.trust.metrics import read_predictions

S = optuna.trial.TrialState
SPACE = {"batch_size": [8], "learning_rate": {"low": 5e-4, "high": 3e-3}, "patience": {"low": 1, "high": 2},
         "dropout": [0, 0.3]}  # fmt: skip
SETTINGS = TuneSettings(arch="mobilenet_v2", n_trials=3, max_epochs=1, seed=0, space=SPACE, pruner_startup_trials=1,
                        pruner_warmup_epochs=0, device="cpu")  # fmt: skip


@pytest.fixture(scope="module")
def packed_file(tmp_path_factory):
    """12 cells: 9 training cells in 3 folds (one per class each), 3 holdout."""
    root = tmp_path_factory.mktemp("tuneparallel")
    manifest, scal_dir = write_cohort(root, per_class=4)
    pack(manifest, scal_dir, root / "packed.h5", 32, classes=CLASSES)
    return root / "packed.h5"


def cli(packed_file, out, settings, *extra):
    return [sys.executable, "-m", "sts.cli", "tune", str(packed_file), str(out), "--arch", settings.arch,
            "--trials", str(settings.n_trials), "--max-epochs", str(settings.max_epochs), "--space",
            json.dumps(settings.space), "--device", "cpu", "--threads", "1", *extra]  # fmt: skip


CLI_SETTINGS = TuneSettings(**{**SETTINGS.__dict__, "pruner_startup_trials": 5, "pruner_warmup_epochs": 5})


# ------------------------------------------------------------- budget and recovery (no training) ---


@pytest.fixture(params=["journal", "sqlite"])
def bare_study(request, tmp_path):
    """An empty shared study in either storage (workers are claim() calls in this process)."""
    url = f"sqlite:///{tmp_path / 'study.db'}" if request.param == "sqlite" else None
    settings = TuneSettings(**{**SETTINGS.__dict__, "n_trials": 2})
    return lambda worker=0: open_study(tmp_path, settings, "data", url, worker=worker)


def start(study, worker, n_trials=2, retry=None):
    trial = claim(study, n_trials, worker, retry)
    if trial is not None:
        trial.suggest_float("x", 0, 1)
    return trial


def test_claims_stop_at_the_budget_and_a_restarted_worker_retries_its_orphan(bare_study, tmp_path):
    s0, s1 = bare_study(0), bare_study(1)
    t0, t1 = start(s0, 0), start(s1, 1)
    assert (t0.number, t1.number) == (0, 1) and start(s0, 0) is None  # 2 running = the budget
    s0.tell(t0, 0.5)
    assert start(s0, 0) is None  # 1 finished + 1 running
    # Worker 1 dies in trial 1; only worker 1, restarted, fails it (worker 0 cannot know it is dead).
    assert recover_orphans(bare_study(0), 0) == []
    s1 = bare_study(1)
    orphans = recover_orphans(s1, 1)
    assert [t.number for t in orphans] == [1]
    retry = start(s1, 1, retry=orphans[0])
    trials = s1.get_trials()
    assert trials[1].state == S.FAIL and retry.number == 2 and trials[2].user_attrs[RETRY_OF] == 1
    assert retry.params == trials[1].params and trials[2].user_attrs[WORKER] == 1
    if (tmp_path / "journal.log").exists():  # the tag is in the very entry that creates the trial
        created = [e for e in map(json.loads, (tmp_path / "journal.log").read_text().splitlines())
                   if e["op_code"] == JournalOperation.CREATE_TRIAL]  # fmt: skip
        assert [e["user_attrs"][WORKER] for e in created] == [0, 1, 1]


def test_a_trial_beyond_the_budget_is_failed_before_it_runs(bare_study):
    study = bare_study(0)
    for _ in range(2):
        trial = start(study, 0)
        study.tell(trial, 0.5)
    study.enqueue_trial({"x": 0.1})  # e.g. a retry queued while the others finished the budget
    assert start(study, 0) is None
    late = study.get_trials()[-1]
    assert late.state == S.FAIL and late.user_attrs[SURPLUS] and len(finished(study)) == 2


# ------------------------------------------------------------- workers with training ----------------


def test_two_workers_share_one_study(packed_file, tmp_path):
    """Two worker processes finish exactly `trials` trials, each number once; the gather writes
    the outputs and the best trial's out-of-fold predictions."""
    out = tmp_path / "tuning"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [subprocess.Popen(cli(packed_file, out, CLI_SETTINGS, "--worker", str(k)), env=env,
                              stderr=subprocess.PIPE, text=True) for k in (0, 1)]  # fmt: skip
    errs = [p.communicate()[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs[0][-2000:] + errs[1][-2000:]
    assert main(cli(packed_file, out, CLI_SETTINGS, "--gather")[3:]) == 0  # `sts tune --gather`, in-process

    study = open_study(out, CLI_SETTINGS, data_key(load_packed(packed_file)))
    states = [t.state for t in study.trials]
    done = sorted(t.number for t in finished(study))
    reports = [json.loads((out / f"worker_{k}.done").read_text()) for k in (0, 1)]
    assert len(done) == 3 and S.RUNNING not in states and S.WAITING not in states
    assert sorted(reports[0]["trials"] + reports[1]["trials"]) == done  # no number run twice
    assert {t.user_attrs[WORKER] for t in finished(study)} <= {0, 1}

    best = json.loads((out / "best_params.json").read_text())
    assert set(best) == {"arch", "params", "cv_balanced_accuracy", "trial", "fold_scores", "best_epochs",
                         "final_epochs"}  # fmt: skip
    assert best["cv_balanced_accuracy"] == max(t.value for t in finished(study) if t.state == S.COMPLETE)
    search = json.loads((out / "search.json").read_text())
    assert search["workers"] == 2 and search["complete"] + search["pruned"] == 3
    trials = pd.read_csv(out / "trials.csv")
    ran = trials.loc[trials["state"].isin(["COMPLETE", "PRUNED"]), "worker"].astype(int)
    assert set(ran) == {k for k in (0, 1) if reports[k]["trials"]}

    oof, classes, proba = read_predictions(out / "oof_best.csv")
    assert (out / "oof_best.csv").read_text() == oof_path(out, study.study_name, best["trial"]).read_text()
    packed = load_packed(packed_file)
    train = packed.split == "train"
    assert classes == CLASSES and list(oof.columns[:4]) == ["specimen_id", "fold", "label", "predicted"]
    assert sorted(oof["specimen_id"]) == sorted(packed.specimen_id[train])  # every training cell once
    expected_fold = dict(zip(packed.specimen_id[train], packed.fold[train]))
    assert all(expected_fold[s] == f for s, f in zip(oof["specimen_id"], oof["fold"]))
    assert np.allclose(proba.sum(axis=1), 1, atol=1e-4)
    for t in finished(study):
        assert oof_path(out, study.study_name, t.number).exists() == (t.state == S.COMPLETE)
    # Fold embeddings: kept for the best trial (ood_folds.npz), none for pruned or lower-scoring ones.
    from sts.cnn import fold_embeddings

    emb = fold_embeddings.load(out / "ood_folds.npz", "mobilenet_v2")
    assert emb.trial == best["trial"] and len(emb.folds) == 3 and emb.n_valid == train.sum()
    assert all(t.shape == (6, 1280) and v.shape == (3, 1280) for t, v in emb.folds)
    for t in finished(study):
        kept = fold_embeddings.trial_path(out, study.study_name, t.number).exists()
        assert kept == (t.state == S.COMPLETE and t.value == best["cv_balanced_accuracy"]), t.number
    # A best trial without them (run before they were kept): a file without folds, a warning.
    fold_embeddings.trial_path(out, study.study_name, best["trial"]).unlink()
    tune_gather(packed, out, CLI_SETTINGS)
    assert fold_embeddings.load(out / "ood_folds.npz").folds == []


def test_a_killed_worker_resumes_and_retries_its_orphan(packed_file, tmp_path):
    """SIGKILL in the middle of trial 0 leaves it RUNNING; worker 0 restarted fails it, runs its
    parameters again under a new number, and completes the study."""
    out = tmp_path / "tuning"
    settings = TuneSettings(**{**CLI_SETTINGS.__dict__, "n_trials": 2})
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cli(packed_file, out, settings, "--worker", "0"), stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)  # fmt: skip
    lines, started = [], False
    for line in proc.stderr:
        lines.append(line)
        started = started or "trial 0 started by worker 0" in line
        if started and "epoch 1/1" in line:  # mid-trial: the first fold is fitted, two to go
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "".join(lines[-20:])
    packed = load_packed(packed_file)
    killed = open_study(out, settings, data_key(packed)).trials
    assert [(t.number, t.state, t.user_attrs[WORKER]) for t in killed] == [(0, S.RUNNING, 0)]

    report = tune_worker(packed, out, settings, 0, threads=1)
    trials = open_study(out, settings, data_key(packed)).trials
    assert [t.state for t in trials][0] == S.FAIL and S.RUNNING not in [t.state for t in trials]
    assert trials[1].user_attrs[RETRY_OF] == 0 and trials[1].params == killed[0].params
    assert len(finished(open_study(out, settings, data_key(packed)))) == 2 and report["trials"] == [1, 2]


def test_one_worker_is_the_sequential_search(packed_file, tmp_path):
    """tune() (worker 0 + gather) draws and scores exactly the trials of a plain study.optimize with
    the same seed: the search before parallel workers, written out here as it was."""
    from sts.cnn.train import TrainParams, fit
    from sts.cnn.tune import cv_folds, suggest

    packed = load_packed(packed_file)
    s = SETTINGS
    best = tune(packed, tmp_path / "tuning", s, threads=1)

    def objective(trial):  # the sequential search's objective
        hp, scores = suggest(trial, s.full_space), []
        for k, (train_idx, valid_idx) in enumerate(cv_folds(packed)):
            def report(epoch, score, k=k):
                trial.report(score, step=k * s.max_epochs + epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned()

            params = TrainParams(**hp, max_epochs=s.max_epochs, seed=s.seed + k, device="cpu")
            scores.append(fit(s.arch, packed.images, packed.y, len(packed.classes), train_idx, valid_idx, params,
                              on_epoch=report, threads=1).best_score)  # fmt: skip
        return float(np.mean(scores))

    reference = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=s.seed),
                                    pruner=optuna.pruners.MedianPruner(s.pruner_startup_trials,
                                                                       s.pruner_warmup_epochs))  # fmt: skip
    reference.optimize(objective, n_trials=s.n_trials)
    ours = open_study(tmp_path / "tuning", s, data_key(packed)).trials
    assert [(t.params, t.state, t.value) for t in ours] == [(t.params, t.state, t.value) for t in reference.trials]
    assert best["params"] == reference.best_params and best["cv_balanced_accuracy"] == reference.best_value


# ------------------------------------------------------------- the DAG ------------------------------


def test_slurm_profile_submits_one_job_per_worker_and_the_gather_waits_for_all(tmp_path):
    """Dry run of the .test config with tune_workers: 3 and trials_per_gpu: 2 through the SLURM
    profile (its executor line left out without the plugin): 3 tuning jobs per architecture,
    each one GPU with twice one trial's threads and memory, and one local gather each whose
    inputs are all 3 workers' done files."""
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        profile.pop("executor")
    (tmp_path / "profile").mkdir()
    (tmp_path / "profile" / "config.yaml").write_text(yaml.safe_dump(profile))
    config = yaml.safe_load((REPO / ".test" / "config.yaml").read_text())
    config["cnn"].update(tune_workers=3, trials_per_gpu=2, gpus=1)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
         "--configfile", str(tmp_path / "config.yaml"), "--profile", str(tmp_path / "profile"), "--dry-run"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = dict(re.findall(r"^(cnn_tune\w*)\s+(\d+)\s*$", proc.stdout.split("Job stats:")[-1], re.M))
    archs = config["cnn"]["architectures"]
    assert stats == {"cnn_tune": str(3 * len(archs)), "cnn_tune_gather": str(len(archs))}
    gathers = re.findall(r"^(?:local)?rule cnn_tune_gather:\n\s+input: (.*)$", proc.stdout, re.M)
    assert len(gathers) == len(archs)
    gathered = re.findall(r"^(?:local)?rule cnn_tune_gather:\n\s+input: .*\n\s+output: (.*)$", proc.stdout, re.M)
    trains = re.findall(r"^rule cnn_train:\n\s+input: (.*)$", proc.stdout, re.M)
    assert len(gathered) == len(trains) == len(archs)
    for arch in archs:  # the best trial's fold embeddings: the gather's output, the final fit's input
        folds = f"results/tuning/{arch}/ood_folds.npz"
        assert sum(folds in out.split(", ") for out in gathered) == sum(folds in i.split(", ") for i in trains) == 1
    for inputs in gathers:
        arch = re.search(r"results/tuning/(\w+)/", inputs)[1]
        assert {f"results/tuning/{arch}/worker_{k}.done" for k in range(3)} <= set(inputs.split(", "))
    workers = re.findall(r"^rule cnn_tune:\n(?:\s+\w+: .*\n)*?\s+output: (results/tuning/\w+/worker_\d+\.done)",
                         proc.stdout, re.M)  # fmt: skip
    assert len(set(workers)) == 3 * len(archs)
    requests = re.findall(r"^rule cnn_tune:\n(?:\s+\w+: .*\n)*?\s+threads: (\d+)\n\s+resources: (.*)$",
                          proc.stdout, re.M)  # fmt: skip
    assert len(requests) == 3 * len(archs)
    for threads, resources in requests:
        res = dict(kv.split("=", 1) for kv in resources.split(", "))
        assert int(threads) == 2 * config["cnn"]["threads"] and int(res["mem_mb"]) == 2 * config["cnn"]["mem_mb"]
        assert res["gpu"] == "1" and res["slurm_partition"] == "gpu" and res["trials_per_gpu"] == "2"


def test_a_job_runs_trials_per_gpu_workers_at_once(packed_file, tmp_path):
    """cnn.trials_per_gpu: job 1 with 2 slots runs study workers 2 and 3 in their own processes
    (threads split between them); together they finish exactly the budget, and only the job's
    done file is written, listing both."""
    from sts.cnn.tune import tune_job

    settings = TuneSettings(**{**SETTINGS.__dict__, "n_trials": 4})
    report = tune_job(packed_file, tmp_path, settings, job=1, per_gpu=2, threads=2)
    assert report["worker"] == 1 and report["slots"] == [2, 3]
    study = open_study(tmp_path, settings, data_key(load_packed(packed_file)))
    assert len(finished(study)) == 4 == len(study.trials)
    assert {t.user_attrs[WORKER] for t in study.trials} == {2, 3}  # both ran trials
    assert sorted(report["trials"]) == [t.number for t in study.trials]
    assert sorted(p.name for p in tmp_path.glob("worker_*.done")) == ["worker_1.done"]
    assert json.loads((tmp_path / "worker_1.done").read_text()) == report
    assert tune_gather(load_packed(packed_file), tmp_path, settings)["cv_balanced_accuracy"] is not None
    assert json.loads((tmp_path / "search.json").read_text())["workers"] == 2
