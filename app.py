"""The risk-assessment HTTP API: predictions from the deployed model, its score and its diagnostics.

Reads:  prod_deployment_path/current              the deployment pointer: one readlink per request
        prod_deployment_path/releases/<release>/  the deployed model, loaded once per release and only
                                                  after its bytes match the manifest's sha256
        test_data_path/testdata.csv               for GET /scoring, once per release
        output_folder_path/finaldata.csv          for GET /summarystats, again only when it changes
        output_model_path/diagnostics.json        for GET /diagnostics, again only when it changes (served
                                                  as written, absolute paths reduced to file names)
        a CSV file named by a caller of POST /prediction, only inside the input, ingested or test
        data folder
Writes: nothing.

Endpoints: POST /prediction, GET /scoring, /summarystats, /diagnostics, /risk, /history, /health and
/openapi.json (the OpenAPI 3.1 description of them all): every answer of these, errors included, is
JSON. The web page for the client managers (GET /, /clients/<id>, the downloads) is HTML.

POST /prediction takes the rows to score as {"records": [{...}, ...]}, as a CSV body (text/csv),
as a multipart upload (field "file"), or as a dataset location, {"dataset": "testdata/testdata.csv"}
or ?dataset=...: a path relative to the config file's folder, taken literally (no percent-decoding,
no "..", not absolute) that must resolve, links followed, inside the input, ingested or test data
folder.

A new deployment is noticed on the next request and served without a restart; a deployment that
fails to load (tampered, incomplete) never replaces the model being served.

Environment: RISK_CONFIG names the config file when create_app() gets none (wsgi.py, gunicorn);
RISK_API_KEY, when set and not empty, is required in the X-API-Key header on every endpoint but
/health.
The API itself is the package riskcore.api; this script is its development server.
Example: python app.py --config config.json   (development server on 127.0.0.1:8000, no debugger)
"""

from __future__ import annotations

import sys

from riskcore.api.factory import create_app
from riskcore.cli import argument_parser, run_cli, setup_logging

__all__ = ["create_app", "main"]


def main(argv: list[str] | None = None) -> int:
    """Command line: run the development server, e.g. python app.py --config config.json --port 8000."""
    parser = argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)

    def body() -> None:
        create_app(args.config).run(host=args.host, port=args.port, debug=False, use_reloader=False,
                                    threaded=True)

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
