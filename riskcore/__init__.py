"""The library under the risk-assessment scripts: one module per job.

contract   schema, artifact names, exit codes, errors        config    config.json, validated once
cli        the command-line edge (logging, one-sentence errors)
files      atomic writes, hashes, timestamps, report numbering
inputs     listing and identifying input files (standard library only: the cron tick's path)
schema     client CSV validation                              releases  reading deployments, verified models
publish    writing releases (deploy, rollback)                history   the run history (one writer, one reader)
drift      PSI, KS and the drift verdicts                     evaluation F1 and the other model metrics
summary    summary statistics and missing data                faults    kill points for the reliability tests

Importing the package imports nothing: each script imports the modules it needs.
"""
