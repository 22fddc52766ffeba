"""CPU and wall time of `sts baseline-published` against a plain Optuna + LightGBM script.

    python benchmarks/bench_lgbm_search.py [--reference resources/paper] [--trials 10] [--jobs 2] [--plain-threads 1]

Both run in a child process each, one after the other, on the same tables, split and features
(``sts.baseline.published.load_published``), the same search space (``DEFAULT_SPACE``), folds
(StratifiedKFold, seeded) and trials:

* plain: an in-memory Optuna TPE study whose objective fits ``LGBMClassifier(n_jobs=PLAIN_THREADS)``
  on each fold in turn, then one refit and the holdout score; no journal, no SHAP, no figures
  (``--plain-threads 0``: LightGBM's default, all cores, which spin-wait on shared ones);
* sts: ``sts baseline-published REFERENCE OUT --trials N --jobs JOBS`` (journal, final fit,
  evaluation, SHAP and figures included; ``search.json``'s ``wall_s`` and ``cpu_s`` are the
  search alone), for each source tree of ``--src`` (e.g. two checkouts, before and after a change).

Printed per variant: wall, user and sys seconds (the child's rusage), the holdout balanced
accuracy, and the 1-min load average before and after (other processes slow every figure;
compare CPU seconds, user + sys, on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def plain(reference: str, trials: int, threads: int, seed: int, folds: int) -> None:
    """The reference search (run in the child): prints its holdout balanced accuracy as JSON."""
    import numpy as np
    import optuna
    from lightgbm import LGBMClassifier
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold

    from sts.baseline.lgbm import DEFAULT_SPACE, DEFAULT_TRIAL, suggest
    from sts.baseline.published import load_published

    data = load_published(reference)
    jobs = threads or None
    X, y = data.train.X, data.train.y.to_numpy()
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y))

    def objective(trial):
        params = suggest(trial, DEFAULT_SPACE)
        scores = []
        for t, v in splits:
            model = LGBMClassifier(**params, random_state=seed, n_jobs=jobs, verbose=-1).fit(X.iloc[t], y[t])
            scores.append(balanced_accuracy_score(y[v], model.predict(X.iloc[v])))
        return float(np.mean(scores))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial(DEFAULT_TRIAL)  # as sts does: the same trials, the same work
    start, cpu = time.perf_counter(), time.process_time()
    study.optimize(objective, n_trials=trials)
    search = {"wall_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu}
    model = LGBMClassifier(**study.best_params, random_state=seed, n_jobs=jobs, verbose=-1).fit(X, y)
    print(json.dumps({"balanced_accuracy": balanced_accuracy_score(data.test.y, model.predict(data.test.X)),
                      **search}))  # fmt: skip


def timed(cmd: list[str], env: dict) -> tuple[float, float, float, str]:
    """(wall, user, sys seconds, stdout) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-4000:]}")
    return wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime, proc.stdout


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", default=str(REPO / "resources" / "paper"))
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--jobs", type=int, default=2, help="sts's --jobs")
    ap.add_argument("--plain-threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--src", nargs="+", type=Path, help="sts source trees to time (default: this one's src/)")
    ap.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)  # the child's side
    args = ap.parse_args()
    if args.plain:
        return plain(args.reference, args.trials, args.plain_threads, args.seed, args.folds)

    common = ["--trials", str(args.trials), "--seed", str(args.seed), "--folds", str(args.folds)]
    print(f"{args.trials} trials, {args.folds} folds; plain: {args.plain_threads or 'default'} LightGBM threads; "
          f"sts: --jobs {args.jobs}; {os.cpu_count()} CPUs; load {load()}")  # fmt: skip
    wall, user, sys_s, out = timed([sys.executable, __file__, "--plain", "--reference", args.reference,
                                    "--plain-threads", str(args.plain_threads), *common], env_with(REPO / "src"))
    plain_run = json.loads(out.strip().splitlines()[-1])
    print(f"plain: wall {wall:6.1f} s  user {user:6.1f} s  sys {sys_s:6.1f} s  holdout BA "
          f"{plain_run['balanced_accuracy']:.4f}  load {load()}  (search alone: wall {plain_run['wall_s']:.1f} s, "
          f"CPU {plain_run['cpu_s']:.1f} s)")  # fmt: skip
    for src in args.src or [REPO / "src"]:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-c", "import sys; from sts.cli import main; sys.exit(main(sys.argv[1:]))",
                   "baseline-published", args.reference, tmp, *common, "--jobs", str(args.jobs)]  # fmt: skip
            wall2, user2, sys2, _ = timed(cmd, env_with(src))
            search = json.loads((Path(tmp) / "search.json").read_text())
            ba2 = json.loads((Path(tmp) / "metrics.json").read_text())["balanced_accuracy"]
        cpu = search.get("cpu_s", float("nan"))  # not recorded before issue 18
        print(f"sts ({src}): wall {wall2:6.1f} s  user {user2:6.1f} s  sys {sys2:6.1f} s  holdout BA {ba2:.4f}  "
              f"load {load()}  (search alone: wall {search['wall_s']:.1f} s, CPU {cpu:.1f} s)")  # fmt: skip
        print(f"  sts / plain, whole command: wall {wall2 / wall:.2f}x, CPU (user + sys) "
              f"{(user2 + sys2) / (user + sys_s):.2f}x; search alone: wall {search['wall_s'] / plain_run['wall_s']:.2f}x, "
              f"CPU {cpu / plain_run['cpu_s']:.2f}x")  # fmt: skip


def env_with(src) -> dict:
    """The environment with ``src`` first on PYTHONPATH."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}

if __name__ == "__main__":
    main()
