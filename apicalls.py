"""Call the four endpoints of a running risk API and record what each one returned.

Reads:  the API at --url (default: the config's automation.api_url, http://127.0.0.1:8000);
        the API key from the RISK_API_KEY environment variable, sent as X-API-Key when set
Writes: output_model_path/apireturns.txt (apireturns<n>.txt on later runs): one JSON document with,
        per endpoint (prediction, scoring, summarystats, diagnostics), the request, the HTTP status
        and the body

POST /prediction names the test data by its location relative to the config file's folder, as the
API resolves it ({"dataset": "testdata/testdata.csv"}); when the test data folder is not below the
config file's folder, the test CSV is sent as the request body instead.
A call that fails (unreachable, timed out, or answered with a status other than 2xx) is recorded
and logged with its URL; the file is still written, with what was obtained, and the exit status is 1.
Example: python apicalls.py --config config.json --url http://127.0.0.1:8000
"""

from __future__ import annotations

import sys

from riskcore.cli import argument_parser, run_cli, setup_logging, whole_number_argument
from riskcore.config import Config, load_config
from riskcore.contract import API_RETURNS, EXIT_FAILED, EXIT_OK
from riskcore.files import next_report_number
from riskcore.ops.api_client import call_endpoints, returns_file


def run(config: Config, url: str, run_number: int | None = None, api_key: str | None = None) -> int:
    """Call the API's four endpoints and write apireturns(<n>).txt; return the exit status.

    `run_number` picks the file (default: the first unused number); `api_key` defaults to
    $RISK_API_KEY.
    """
    return EXIT_FAILED if call_endpoints(config, url, run_number=run_number, api_key=api_key) else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Command line: call the API and write apireturns.txt, e.g. python apicalls.py --url http://127.0.0.1:8000."""
    parser = argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="the API's address (default: the config's automation.api_url)")
    parser.add_argument("--run-label", type=whole_number_argument(1), default=None, metavar="N",
                        help="write apireturns<N>.txt (default: the first unused number)")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)

    def body() -> int:
        config = load_config(args.config)
        number = args.run_label or next_report_number(config.output_model_folder, (API_RETURNS,))
        url = args.url if args.url is not None else config.automation["api_url"]
        status = run(config, url, run_number=number)
        target = returns_file(config, number)
        if status != EXIT_OK:
            print(f"error: not every API call succeeded; see {target}.", file=sys.stderr)
        else:
            print(target)
        return status

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
