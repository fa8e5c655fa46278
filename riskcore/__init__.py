"""The library under the risk-assessment scripts, one folder per stage of the pipeline.

The map (the one place it is written; the README points here):

  contract  config  cli  files  faults  formatting          shared by every stage
  data/     the rows: input_files, contract_rules and validation (the contract's checks), client_csv (the
            one reader of client CSV files), client_scan (the streamed read), snapshots, snapshot_index,
            folder_ingest; a table as the source: db_setting, db_connection, db_changes, db_ingest
  model/    the model: training, time_limit, own_market, calibration, calibration_rows, evaluation, holdout,
            drift, drift_evidence, estimate_words, reasons
  release/  releases: load (hash-checked reading), publish, listing, operator_state
  ops/      the cron tick: lock, deadline, new_data, tick, run, run_record, drift_check, evidence_window,
            ledger, history, alerts; calls (the calls recorded), api_client
  report/   the outputs: call_list, rankings, call_effect, statistics, charts, pdf, pdf_evidence, pdf_layout,
            writer, outputs, diagnostics, timing, dependencies
  api/      the Flask app: factory, key, errors, query, request_rows, views, served_model, risk_service,
            paged_call_list, file_cache, metrics, openapi, warm_up; the pages: pages, page_access,
            form_guard, page_data, page_health, page_charts, client_story, calls_view, history_view

Each module's docstring says its job. Importing the package, or any of its folders, imports
nothing: each script imports the modules it needs, so a cron tick with nothing to do stays on
the standard library.
"""
