"""The Optuna study that one architecture's tuning workers share: storage, name, recovery, budget.

Storage: an Optuna journal file (``OUT_DIR/journal.log``; appends are locked, which works on
the shared file systems of clusters) or, for sites that have one, an RDB URL
(``postgresql://...``, ``mysql://...``, ``sqlite:///...``). The study is named after a hash of
the search settings and of the packed data (``data_key``): changed settings or cells start a
new study instead of mixing trials, and asking for more trials extends the same one.

Workers: any number of processes (Snakemake jobs, SLURM jobs on several nodes) take trials of
one study. Each has an integer id (0 to N-1; one live process per id) and tags the trials it
runs with it (user attr ``worker``), in the very storage write that creates the trial, so no
kill can leave a trial without its tag. The journal has no heartbeat, so a worker killed
mid-trial leaves its trial RUNNING; when that worker is started again (Snakemake re-runs its
failed or incomplete job) it fails its own orphans and runs their parameters again under new
trial numbers (user attr ``retry_of``). A RUNNING trial without a tag (a trial someone enqueued
by hand, or one left by an earlier version) is failed by any worker once it is older than
``UNTAGGED_GRACE_S``.

Budget: a worker asks for a trial only while fewer than ``n_trials`` trials are finished
(complete or pruned) or running, or when a trial is queued (WAITING); once Optuna has numbered the trial,
the worker keeps it only if fewer than ``n_trials`` live trials have lower numbers. Two workers
asking at once therefore never overshoot: the later one's trial is failed before any training
(user attr ``surplus``), so the study ends with exactly ``n_trials`` finished trials.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

JOURNAL = "journal.log"
WORKER, RETRY_OF, SURPLUS = "worker", "retry_of", "surplus"
UNTAGGED_GRACE_S = 300
# Worker k's sampler seeds are seed + k * stride + (trials when it starts): distinct for every
# worker and restart, and worker 0 on a fresh study draws exactly as a single search does.
WORKER_SEED_STRIDE = 2**20
DATA_SAMPLE_ROWS = 32


def is_url(location: str | None) -> bool:
    return bool(location) and "://" in str(location)


def storage(location: str | Path):
    """RDB storage for a URL, else a journal file at ``location``."""
    import optuna

    if is_url(location):
        return optuna.storages.RDBStorage(str(location))
    from optuna.storages.journal import JournalFileBackend

    Path(location).parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(location)))


def data_key(packed) -> str:
    """A short hash of the packed cells: ids, labels, split, folds, classes, image format and
    ``DATA_SAMPLE_ROWS`` evenly spaced images (what any upstream change alters; cheap at any size)."""
    h = hashlib.sha1()
    for arr in (packed.specimen_id, packed.label, packed.split, packed.fold):
        h.update(json.dumps(np.asarray(arr).tolist()).encode())
    h.update(json.dumps([packed.classes, list(packed.input_size), asdict(packed.norm),
                         str(packed.images.dtype), list(packed.images.shape)]).encode())  # fmt: skip
    rows = np.unique(np.linspace(0, len(packed.images) - 1, DATA_SAMPLE_ROWS).astype(int)) if len(packed.images) else []
    for i in rows:
        h.update(np.ascontiguousarray(packed.images[i]).tobytes())
    return h.hexdigest()[:10]


def study_name(settings, data: str) -> str:
    # n_trials is left out: asking for more trials extends the same study.
    text = json.dumps({**asdict(settings), "space": settings.full_space, "n_trials": None, "data": data},
                      sort_keys=True)  # fmt: skip
    return f"{settings.arch}-{hashlib.sha1(text.encode()).hexdigest()[:10]}"


def open_study(out_dir: str | Path, settings, data: str, storage_url: str | None = None, worker: int = 0,
               seed_offset: int | None = None):  # fmt: skip
    """Create or load the shared study, with worker ``worker``'s sampler (see WORKER_SEED_STRIDE)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    st = storage(storage_url if is_url(storage_url) else Path(out_dir) / JOURNAL)
    name = study_name(settings, data)
    pruner = (
        optuna.pruners.MedianPruner(settings.pruner_startup_trials, settings.pruner_warmup_epochs)
        if settings.pruner == "median"
        else optuna.pruners.NopPruner()
    )
    existing = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(st)}.get(name, 0)
    offset = existing if seed_offset is None else seed_offset
    sampler = optuna.samplers.TPESampler(seed=settings.seed + worker * WORKER_SEED_STRIDE + offset)
    return optuna.create_study(study_name=name, storage=st, direction="maximize", sampler=sampler,
                               pruner=pruner, load_if_exists=True)  # fmt: skip


def finished(study) -> list:
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return [t for t in study.get_trials(deepcopy=False) if t.state in states]


def _fail(study, trial) -> bool:
    """Fail a RUNNING trial; False when another process finished it first."""
    import optuna
    from optuna.exceptions import UpdateFinishedTrialError

    try:
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    except (UpdateFinishedTrialError, ValueError):  # finished before / while we told it
        return False
    return True


def recover_orphans(study, worker: int, now: datetime.datetime | None = None) -> list:
    """Fail this worker's RUNNING trials (and untagged stale ones); return them, to be retried
    (``claim(..., retry=...)``). Call before the worker takes its first trial."""
    import optuna

    now = now or datetime.datetime.now()
    recovered = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        owner = t.user_attrs.get(WORKER)
        stale = owner is None and t.datetime_start and (now - t.datetime_start).total_seconds() > UNTAGGED_GRACE_S
        if (owner == worker or stale) and _fail(study, t):
            recovered.append(t)
            log.warning("trial %d was left running by worker %s: failed, its parameters will run again",
                        t.number, owner)  # fmt: skip
    return recovered


@contextlib.contextmanager
def _created_with(study, user_attrs: dict, system_attrs: dict):
    """Trials that ``study.ask()`` creates in this block carry these attributes from the write
    that creates them (Optuna's ask cannot pass any; setting them afterwards leaves a window in
    which a kill makes an untagged orphan nobody recovers)."""
    import optuna

    st = study._storage
    create = st.create_new_trial

    def create_new_trial(study_id, template_trial=None):
        if template_trial is None:
            template_trial = optuna.trial.FrozenTrial(
                number=-1, trial_id=-1, state=optuna.trial.TrialState.RUNNING, value=None,
                datetime_start=datetime.datetime.now(), datetime_complete=None, params={}, distributions={},
                user_attrs=dict(user_attrs), system_attrs=dict(system_attrs), intermediate_values={},
            )  # fmt: skip
        return create(study_id, template_trial)

    st.create_new_trial = create_new_trial
    try:
        yield
    finally:
        del st.create_new_trial  # the storage's own method again


def claim(study, n_trials: int, worker: int, retry=None):
    """The next trial for ``worker``, or None once the budget is taken. ``retry``: a failed trial
    (from ``recover_orphans``) whose parameters the new trial takes. A trial someone enqueued
    (WAITING) is taken first."""
    import optuna

    S = optuna.trial.TrialState
    live = (S.COMPLETE, S.PRUNED, S.RUNNING, S.WAITING)
    trials = study.get_trials(deepcopy=False)
    waiting = any(t.state == S.WAITING for t in trials)
    if not waiting and sum(t.state in live for t in trials) >= n_trials:
        return None
    user_attrs, system_attrs = {WORKER: worker}, {}
    if retry is not None:  # "fixed_params" is how Optuna's enqueue_trial makes a trial take given values
        user_attrs[RETRY_OF], system_attrs["fixed_params"] = retry.number, dict(retry.params)
    with _created_with(study, user_attrs, system_attrs):
        trial = study.ask()
    if trial.user_attrs.get(WORKER) != worker:  # popped from the queue, not created
        trial.set_user_attr(WORKER, worker)
    ahead = sum(t.state in live for t in study.get_trials(deepcopy=False) if t.number < trial.number)
    if ahead >= n_trials:
        trial.set_user_attr(SURPLUS, True)
        study.tell(trial, state=S.FAIL)
        log.info("worker %d: trial %d not needed (%d trials ahead of it)", worker, trial.number, ahead)
        return None
    return trial
