# Helpers for the rules made from DVC's stages (Snakemake's flags live here).
import shutil
import sys

from echocem.checkout import hold, record_lock, remove_unfinished_lock_writes, repo_of_run
from echocem.dag import covers, dep_sources, is_dir_path
from echocem.staleness import marker, refresh_memo


def stage_inputs(stage, stages, to_run):
    """The stage's deps and its marker; file times count only where DVC says a run is due.

    Every dep is `ancient` (its time ignored: DVC judges contents), except, for a stage
    that is to run, the outputs of upstream stages that are to run too: Snakemake only
    runs a job downstream of a job it runs through such a non-ancient edge. The
    marker's time counts when DVC reports the stage, or an upstream one, out of date.
    """
    due = stage.name in to_run
    inputs = []
    for dep in stage.deps:
        sources = dep_sources(stages, dep)
        holders = {up for up, out in sources if covers(out, dep)}
        if holders or not sources:
            items = [(dep, holders)]
        else:  # a folder of other stages' outputs is read through them: Snakemake's edges
            items = [(out, {up}) for up, out in sources]
        inputs += [path if due and ups & to_run else ancient(path) for path, ups in items]
    return inputs + [marker(stage) if due else ancient(marker(stage))]


def declared_output(stage, path):
    """A DVC out as a Snakemake output. `update`: Snakemake leaves the previous
    good version in place while the job runs (stages write by atomic rename) and
    puts it back if the job fails. Folders as directory(); results marked for the report."""
    out = update(directory(path) if is_dir_path(path) else path)
    if path in stage.metrics:
        return report(out, category="Metrics", subcategory=stage.name)
    if path.endswith((".html", ".md")):
        return report(out, category="Report", subcategory=stage.name)
    if path.startswith("reports/"):
        if is_dir_path(path):
            return report(out, patterns=["{name}.png", "{name}.tsv", "{name}.json"],
                          category="Figures", subcategory=stage.name)
        return report(out, category="Figures", subcategory=stage.name)
    return out


_HELD = {}  # the checkout this run holds (onstart), freed at its end


def start_run(stages, retiring):
    _HELD["checkout"] = hold(".")
    remove_unfinished_lock_writes(".")  # copies of dvc.lock a killed job was writing: no job runs now
    if retiring:  # before any job: the stages reading these outputs are among those to run
        from echocem.retired import retire

        with repo_of_run(".") as repo, record_lock(".", exclusive=True):
            for name, outs in retire(repo, stages).items():
                print(f"echocem: stage {name} is no longer in dvc.yaml: removed its dvc.lock entry"
                      + (f" and its outputs {', '.join(outs)}" if outs else ""), file=sys.stderr)
    # Snakemake copies an `update` output before its job and removes the copy after it; a
    # killed run leaves the copy behind, and the next run's copy would then fail. With the
    # checkout held no job runs, so any copy left is stale (the outputs themselves are intact:
    # stages write by atomic rename).
    shutil.rmtree(".snakemake/backups", ignore_errors=True)


def finish_run(stages):
    """End of a run: keep DVC's fresh answer for the next start, then free the checkout."""
    checkout = _HELD.pop("checkout", None)
    if checkout is None:
        return
    try:
        refresh_memo(".", stages)
    finally:
        checkout.release()
