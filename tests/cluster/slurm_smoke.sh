#!/usr/bin/env bash
# Smoke test of profiles/slurm on a real SLURM: a one-node cluster on this machine.
#
# Installs Debian's slurm-wlm and munge (apt-get; needs root, skipped when installed),
# writes a minimal slurm.conf under $STATE, starts munged, slurmctld and slurmd, waits for
# the node to be idle, then runs the .test config through `--profile profiles/slurm` in a
# temporary directory (the repository's results/ are untouched) and checks that the
# workflow completed: expected outputs exist, nothing is left to do, and the per-cell
# jobs went to SLURM grouped into few submissions. Daemons this script started are
# stopped at the end (KEEP_SLURM=1 keeps them).
#
#   bash tests/cluster/slurm_smoke.sh        # from the repository root, venv active
#
#   SMOKE_CNN=1 bash tests/cluster/slurm_smoke.sh   # CNN stage on the "GPUs" (one tiny arch,
#                                                   # its search as 2 tuning jobs: cnn.tune_workers 2)
#
# Too slow for CI (install + several minutes on 2 cores); run it after changing the profile.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/../.." && pwd)"
STATE="${STATE:-/tmp/sts-slurm-smoke}"
WORK="$(mktemp -d /tmp/sts-slurm-run.XXXXXX)"
# The default path: the executor's job steps drop SLURM_* variables (SLURM_CONF too),
# so srun inside a job finds its config only there. A site's own file is never replaced.
CONF_DIR=/etc/slurm
MARK="# written by sts tests/cluster/slurm_smoke.sh"
PYTHON="${PYTHON:-python}"
t0=$(date +%s)
log() { echo "[slurm_smoke +$(($(date +%s) - t0))s] $*"; }

# --- install (idempotent) ---
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    log "installing slurm-wlm and munge"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge
fi
"$PYTHON" -c "import snakemake_executor_plugin_slurm" 2>/dev/null || {
    # The plugin alone, pinned as the [cluster] extra pins it: never `pip install -e` here, which
    # would repoint a shared environment's editable sts install at this checkout.
    spec=$(sed -n 's/^cluster = \["\(.*\)"\]$/\1/p' "$REPO/pyproject.toml")
    [[ -n "$spec" ]] || { echo "pyproject.toml: no cluster = [\"...\"] extra found"; exit 1; }
    log "installing the SLURM executor plugin ($spec, the [cluster] extra)"
    "$PYTHON" -m pip install -q "$spec"
}

# --- a one-node cluster: this host, partitions "main" (default) and "gpu" ---
# The node declares 16 CPUs, 128 GB and two GPUs (config_overrides): the profile's real
# requests (8 CPUs, 64 GB, --gres=gpu:1 on partition gpu for the CNN rules) are then
# accepted as a site would accept them. Nothing enforces them here (task/none, no
# cgroups); --jobs below keeps the load to what this machine has.
NODE="$(hostname -s)"
mkdir -p "$STATE/spool" "$STATE/state" "$CONF_DIR"
if [[ -f "$CONF_DIR/slurm.conf" ]] && ! grep -qF "$MARK" "$CONF_DIR/slurm.conf"; then
    echo "$CONF_DIR/slurm.conf exists and is not ours: not touching a real cluster's config"
    exit 1
fi
# slurmd drops a GPU without a device file; /dev/null and /dev/zero stand in for
# /dev/nvidia0 and 1 (two, so that the two tuning jobs of SMOKE_CNN can run at once).
cat >"$CONF_DIR/gres.conf" <<EOF
$MARK
NodeName=$NODE Name=gpu File=/dev/null
NodeName=$NODE Name=gpu File=/dev/zero
EOF
cat >"$CONF_DIR/slurm.conf" <<EOF
$MARK
ClusterName=stssmoke
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
GresTypes=gpu
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
MinJobAge=3600
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
NodeName=$NODE CPUs=16 RealMemory=131072 Gres=gpu:2 State=UNKNOWN
PartitionName=main Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE MaxTime=INFINITE State=UP
EOF

# --- daemons (each started only if not already running) ---
started=()
stop_daemons() {
    [[ "${KEEP_SLURM:-0}" == 1 ]] && return
    for pidfile in "${started[@]}"; do
        [[ -f "$pidfile" ]] && kill "$(cat "$pidfile")" 2>/dev/null || true
    done
}
trap stop_daemons EXIT
running() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "starting munged"
    mkdir -p /run/munge && chown munge:munge /run/munge 2>/dev/null || true
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid ||
        /usr/sbin/munged --force --pid-file=/run/munge/munged.pid
    started+=(/run/munge/munged.pid)
fi
if ! running "$STATE/slurmctld.pid"; then
    log "starting slurmctld"
    slurmctld -i
    started+=("$STATE/slurmctld.pid")
fi
if ! running "$STATE/slurmd.pid"; then
    log "starting slurmd"
    slurmd
    started+=("$STATE/slurmd.pid")
fi

log "waiting for node $NODE to be idle"
for _ in $(seq 60); do
    state="$(sinfo -h -n "$NODE" -o %t 2>/dev/null | head -1 || true)"
    [[ "$state" == idle* || "$state" == mix* ]] && break
    [[ "$state" == down* || "$state" == drain* ]] && scontrol update nodename="$NODE" state=resume || true
    sleep 2
done
sinfo
[[ "$state" == idle* || "$state" == mix* ]] || { echo "node never became idle (state: $state)"; exit 1; }

# --- the .test workflow through the profile ---
# Local overrides only: no accounting here (no sacct, no account); two SLURM jobs at a
# time, each running at most 2 jobs of its group (this machine has 2 cores); per-cell
# groups of 25 components, so the 40-cell test cohort is split over several submissions
# (the profile's 200 is for thousands of cells).
cp "$REPO/.test/config.yaml" "$WORK/config.yaml"
if [[ "${SMOKE_CNN:-0}" == 1 ]]; then
    # The CNN stage tiny (one architecture, two trials, one epoch, 32 px) and asking SLURM
    # for a GPU (cnn.gpus: 1): the profile's GPU partition and --gpus path, end to end;
    # the search as two tuning jobs sharing one study (cnn.tune_workers: 2).
    "$PYTHON" - "$REPO/config/config.yaml" "$WORK/config.yaml" <<'PY'
import sys, yaml
demo, path = (yaml.safe_load(open(p)) for p in sys.argv[1:])
cnn = demo["cnn"]
cnn.update(architectures=["mobilenet_v2"], input_size=32, weights="none", trials=2, max_epochs=1,
           threads=1, gpus=1, overrides={}, tune_workers=2)
path["cnn"] = cnn
yaml.safe_dump(path, open(sys.argv[2], "w"))
PY
fi
log "running the .test workflow in $WORK"
"$PYTHON" -m snakemake --snakefile "$REPO/Snakefile" --directory "$WORK" \
    --configfile "$WORK/config.yaml" --profile "$REPO/profiles/slurm" \
    --slurm-no-account --slurm-status-command squeue --slurm-keep-successful-logs \
    --slurm-init-seconds-before-status-checks 5 \
    --jobs 2 --cores 2 --group-components cell=25 --latency-wait 10 \
    >"$WORK/snakemake.log" 2>&1 || {
    tail -60 "$WORK/snakemake.log"
    echo "slurm_smoke: FAILED (workflow run, log $WORK/snakemake.log)"
    exit 1
}
log "workflow finished"

# --- checks ---
cd "$WORK"
fail() { echo "slurm_smoke: FAILED ($*; log $WORK/snakemake.log)"; exit 1; }
for f in results/manifest.csv results/baseline/metrics.json results/baseline/features.csv; do
    [[ -s "$f" ]] || fail "missing $f"
done
n_ok=$(awk -F, 'NR > 1 && $4 == "ok"' results/manifest.csv | wc -l)
n_scal=$(ls results/scalograms/*.h5 | wc -l)
((n_ok > 0 && n_scal >= n_ok)) || fail "$n_ok ok cells but $n_scal scalograms"
"$PYTHON" -m snakemake --snakefile "$REPO/Snakefile" --directory "$WORK" \
    --configfile "$WORK/config.yaml" --dry-run >"$WORK/dryrun.log" 2>&1
grep -q "Nothing to be done" "$WORK/dryrun.log" || fail "a dry run after the run still has jobs"
n_jobs=$(grep -c "^\s*rule \w*:" "$WORK/snakemake.log" || true)
n_sub=$(grep -c "has been submitted with SLURM jobid" "$WORK/snakemake.log" || true)
((n_sub > 0 && n_sub < n_jobs)) || fail "$n_jobs jobs in $n_sub SLURM submissions: per-cell jobs not grouped"
if [[ "${SMOKE_CNN:-0}" == 1 ]]; then
    # Two tuning jobs went to SLURM (the executor keeps one log folder per job under
    # rule_cnn_tune/, named after its wildcards), both wrote their report, and the gather
    # counted both workers on the one study.
    n_tune=$(find .snakemake/slurm_logs -path "*rule_cnn_tune/*" -name "*.log" | wc -l)
    ((n_tune == 2)) || fail "$n_tune cnn_tune SLURM jobs, expected 2 (cnn.tune_workers: 2)"
    for k in 0 1; do [[ -s results/tuning/mobilenet_v2/worker_$k.done ]] || fail "no worker_$k.done"; done
    "$PYTHON" -c 'import json, sys; s = json.load(open(sys.argv[1])); assert s["workers"] == 2 and s["complete"] + s["pruned"] == 2, s' \
        results/tuning/mobilenet_v2/search.json || fail "search.json does not count 2 workers and 2 trials"
    [[ -s results/models/mobilenet_v2/metrics.json ]] || fail "no CNN metrics.json"
    log "OK: the search ran as $n_tune SLURM tuning jobs"
fi
log "OK: $n_ok ok cells, $n_scal scalograms, $n_jobs jobs ran in $n_sub SLURM submissions"
echo "slurm_smoke: PASSED in $(($(date +%s) - t0)) s (work dir $WORK)"
