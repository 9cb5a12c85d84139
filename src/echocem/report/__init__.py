"""The report of a pipeline run: one self-contained HTML page and a short Markdown summary.

- `load`: the I/O edge; reads every stage's metrics, figures and curves, the
  Snakemake benchmarks, dvc.lock and the environment into one `Run`;
- `document`: pure; turns a `Run` into sections of tables, figures and text;
- `html`, `markdown`: pure; render those sections (figures as base64 data URIs);
- `figures`: the plots the report draws itself (training curves, run times);
- provenance rows come from `echocem.records` (DVC's record and status), shared with the audit.
"""
