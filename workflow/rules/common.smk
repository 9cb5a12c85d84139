# Helpers for the rules derived from dvc.yaml.


def declared_output(stage, path):
    """A DVC out as a Snakemake output: folders as directory(), results marked for the report."""
    out = directory(path) if is_dir_path(path) else path
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
