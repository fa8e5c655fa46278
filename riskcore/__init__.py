"""The library under the risk-assessment scripts: one module per job, named for it.

The contract and the edge
  contract     schema, artifact names, exit codes, errors, the API's names
  config       config.json, validated once into a frozen Config      cli       options, logging, one-sentence errors
  files        atomic writes, hashes, JSON records, report numbering  faults    kill points for the reliability tests
  apikey       where the API key comes from (environment or an owner-only file)
Data
  inputs       listing and identifying input files (standard library only)
  schema       client CSVs against the contract (polars)             ingest    ingesting the input folder, the record
  snapshots    one row per client: the merge and the ingestion's results (folder and table alike)
  summary      summary statistics and missing data
The model
  model        training and its metadata                              evaluation F1, probabilities, fuller metrics
  drift        PSI, KS and the drift verdicts                         reasons   each feature's share of a risk
Releases
  releases     reading deployments, verified model loading           publish   writing releases, rollback, repair
  control      the production folder's owner, pin, rolled-back files
The automation
  lock         the run lock                   newdata   what is new      runs    a run's record, steps, pending marks
  automation   the cheap tick                 cycle     a run with work  history the run history (one writer/reader)
Reports and diagnostics
  risklist     the call list (polars)         charts    matplotlib charts  pdf     the PDF report
  clientscan   streaming a client file for the call list and naming its first problem
  reports      gathering and writing the reports                       diagnostics, timing, dependencies
The API
  api/         the Flask app: factory, errors, serving, inputs, views, OpenAPI   apiclient  calling it

Importing the package imports nothing: each script imports the modules it needs.
"""
