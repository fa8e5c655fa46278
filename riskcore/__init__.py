"""The library under the risk-assessment scripts, one folder per stage of the pipeline.

The map (the one place it is written; the README points here):

  contract.py  config.py  cli.py  files.py  faults.py  formatting.py    shared by every stage
  data/     the rows: input files, the contract's checks, snapshots, ingestion (folder, table)
  model/    the model: training, evaluation, holdout, drift, drift evidence, reasons
  release/  releases: loading (hash-checked), publishing, the operator's state
  ops/      the cron tick: lock, new data, tick, run, drift check, run record, history, the API client
  report/   the outputs: call list, statistics, charts, PDF, diagnostics, timings, dependencies
  api/      the Flask app: factory, key, errors, query, views, served model, risk service, paged call
            list, file cache, history, the pages and their access

Each module's docstring says its job. Importing the package, or any of its folders, imports
nothing: each script imports the modules it needs, so a cron tick with nothing to do stays on
the standard library.
"""
