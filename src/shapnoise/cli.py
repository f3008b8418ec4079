"""The ``shapnoise`` command: ``shapnoise labelstudio push`` and ``shapnoise labelstudio pull``."""

from __future__ import annotations

import argparse
import logging
import sys

from shapnoise.io import setup_logging
from shapnoise.labelling import SPLITS, ExportError
from shapnoise.labelstudio_client import (
    DEFAULT_TITLE,
    DEFAULT_URL,
    EXPORT_FILE,
    KEY_ENV,
    URL_ENV,
    LabelStudioError,
    Server,
    pull_split,
    push_split,
    read_environment,
)

log = logging.getLogger("shapnoise.cli")

ENVIRONMENT_HELP = (
    f"The server comes from {URL_ENV} (default: {DEFAULT_URL}) and the API key from {KEY_ENV} "
    "(required: a personal access token or a legacy token from Account & Settings)."
)


def _add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--split", nargs="+", choices=SPLITS, default=list(SPLITS),
                        help="splits to work on, one project each (default: train test)")
    parser.add_argument("--export-dir", default="data/labelstudio",
                        help="folder of the labelstudio_export stage, one subfolder per split "
                             "(default: data/labelstudio)")
    parser.add_argument("--title", default=DEFAULT_TITLE,
                        help="project title; {split} is replaced by the split name (default: '%(default)s')")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for each response of the server (default: 60)")
    parser.add_argument("--retries", type=int, default=3,
                        help="extra attempts after a failed connection, a timeout or a server error, "
                             "with waits of 1, 2, 4... s (default: 3)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shapnoise", description="Tools around the shapnoise DVC pipeline.")
    commands = parser.add_subparsers(dest="command", required=True)

    labelstudio = commands.add_parser("labelstudio", help="exchange tasks and annotations with Label Studio",
                                      description="Exchange tasks and annotations with a Label Studio server. "
                                                  + ENVIRONMENT_HELP)
    actions = labelstudio.add_subparsers(dest="action", required=True)

    push = actions.add_parser("push", help="create or reuse one project per split and add the missing tasks",
                              description="Create or reuse one project per split with the exported labelling "
                                          "config, and import the tasks that the project does not have yet "
                                          "(matched by source_id), with the generator's prediction as a "
                                          "pre-annotation. " + ENVIRONMENT_HELP)
    _add_server_options(push)
    push.add_argument("--batch-size", type=int, default=500,
                      help="tasks per import request (default: 500)")

    pull = actions.add_parser("pull", help="export the annotations of each split's project into labels/",
                              description="Export the annotated tasks of each split's project in Label "
                                          f"Studio's JSON format into LABELS_DIR/<split>/{EXPORT_FILE}. "
                                          "The file is rewritten only when its content changed. "
                                          + ENVIRONMENT_HELP)
    _add_server_options(pull)
    pull.add_argument("--labels-dir", default="labels",
                      help="folder of the committed exports, one subfolder per split (default: labels)")
    pull.add_argument("--keep-images", action="store_true",
                      help="keep the embedded PNG (data.image) in the export; "
                           "default: removed, because tasks.json already holds it")
    return parser


def _run(args: argparse.Namespace) -> None:
    if args.retries < 0:
        raise ValueError(f"--retries {args.retries} is invalid: expected 0 or more")
    if args.timeout <= 0:
        raise ValueError(f"--timeout {args.timeout} is invalid: expected a number of seconds above 0")
    url, api_key = read_environment()
    server = Server(url, api_key, timeout=args.timeout, retries=args.retries)

    for split in args.split:
        title = args.title.format(split=split)
        if args.action == "push":
            if args.batch_size < 1:
                raise ValueError(f"--batch-size {args.batch_size} is invalid: expected 1 or more")
            push_split(server, args.export_dir, split, title, batch_size=args.batch_size)
        else:
            pull_split(server, args.export_dir, args.labels_dir, split, title, keep_images=args.keep_images)


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv``; return the exit status (0 on success, 1 on an error the user can fix)."""
    args = build_parser().parse_args(argv)
    setup_logging()
    # httpx logs every request at INFO; the commands log what matters themselves.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        _run(args)
    except (LabelStudioError, ExportError, FileNotFoundError, ValueError) as error:
        log.error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
