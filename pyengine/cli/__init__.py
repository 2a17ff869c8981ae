"""The ``pyengine`` command line: ``pyengine train MODEL``, the image-restoration commands and
``pyengine bench``. Each command module exposes ``register(subparsers)`` that adds
its parsers with ``set_defaults(func=...)``; ``func(args)`` returns the process exit code."""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules that contribute commands; a `train` model registers under the shared `train` parser.
COMMAND_MODULES = [
    "pyengine.cli.classify",
    "pyengine.cli.restore",
    "pyengine.cli.restore_inverse",
]


class UserError(Exception):
    """A problem with the user's input: printed as one clear line, exit code 2."""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends an option's default to its help unless the help already says it or it is unset."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        unset = action.default is None or action.default is False
        if "default" in text or unset or action.default == argparse.SUPPRESS:
            return text
        return super()._get_help_string(action) or text


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyengine",
        description="pyengine: train and run image CNNs on hand-written C++/CUDA kernels.",
    )
    from pyengine import __version__

    parser.add_argument("--version", action="version", version=f"pyengine {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    train = sub.add_parser("train", help="train a model (see `pyengine train -h`)")
    train_sub = train.add_subparsers(dest="model", metavar="MODEL", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub, train_sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        target = args.command and parser._subparsers._group_actions[0].choices.get(args.command)
        (target or parser).print_help()
        return 2
    from pyengine import backends

    # Commands switch deterministic algorithms on for their run; callers in the same process
    # (tests, notebooks) get their own setting back.
    deterministic = backends.are_deterministic_algorithms_enabled()
    winograd = backends.allow_winograd
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"pyengine {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        backends.use_deterministic_algorithms(deterministic)
        backends.allow_winograd = winograd


if __name__ == "__main__":
    sys.exit(main())
