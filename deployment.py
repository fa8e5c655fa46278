"""Deploy the trained model and its records to production, all at once.

Reads:  output_model_path/trainedmodel.pkl, modelmetadata.json, latestscore.txt
        output_folder_path/ingestedfiles.txt, ingestionrecord.json
Writes: prod_deployment_path/releases/<NNNNNN-time>/  a complete copy of those files plus a
                                                       manifest (deployment.json) with hashes
        prod_deployment_path/current                  link to the release being served
        prod_deployment_path/<file>                   links through `current`, for the course's names

A release folder is filled under a temporary name and renamed into place, then the `current`
link is replaced atomically: a reader sees the old set or the new set, never a mix, even when
the process is killed. The last few releases are kept; --rollback serves the previous one again.
Examples: python deployment.py --config config.json
          python deployment.py --config config.json --rollback
"""

from __future__ import annotations

import sys

from riskcore.cli import argument_parser, run_cli, setup_logging
from riskcore.config import Config, load_config
from riskcore.publish import deploy, rollback
from riskcore.releases import Deployment


def run(config: Config, rollback_to_previous: bool = False) -> Deployment:
    """Deploy the trained model with the ingestion records, or serve the previous release again."""
    if rollback_to_previous:
        return rollback(config.prod_deployment_folder)
    return deploy(config)


def main(argv: list[str] | None = None) -> int:
    """Command line: deploy the trained model, or roll back with --rollback."""
    parser = argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--rollback", action="store_true", help="serve the previous release again")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)

    def body() -> None:
        deployment = run(load_config(args.config), rollback_to_previous=args.rollback)
        print(f"release {deployment.release}: model {deployment.model_version}")

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
