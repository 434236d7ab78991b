"""Shared pieces of the command line: one-line user errors, the group classes, defaults taken from config fields."""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path

import click

from latentwalk.data.splits import DEFAULT_FRACTIONS
from latentwalk.errors import ConfigError, LatentwalkError

EXIT_USER_ERROR = 2


class UserError(click.ClickException):
    """A :class:`LatentwalkError` shown as one line, without a traceback."""

    exit_code = EXIT_USER_ERROR


class Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except LatentwalkError as err:
            if ctx.meta.get("latentwalk.debug"):
                raise
            raise UserError(str(err)) from err


class CliGroup(Group):
    """The top-level group: every error a user can cause, usage errors included, is one ``Error:`` line on stderr
    with exit code 2 (click's own usage errors print three lines)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except getattr(click.exceptions, "NoArgsIsHelpError", ()) as e:  # bare `latentwalk`: the help, as before
            click.echo(e.format_message())
            sys.exit(0)
        except click.UsageError as e:
            where = f"; see '{e.ctx.command_path} --help'" if e.ctx is not None else ""
            message = e.format_message().replace("\n", " ").rstrip(".")
            click.echo(f"Error: {message}{where}", err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def progress(ctx: click.Context) -> bool:
    """Progress bars only for a person watching: not with ``--quiet``, not when stderr is not a terminal."""
    return not ctx.meta.get("latentwalk.quiet", False) and sys.stderr.isatty()


DEFAULT_FRACTIONS_TEXT = ",".join(f"{f:g}" for f in DEFAULT_FRACTIONS)  # "0.7,0.1,0.2", from latentwalk.data.splits


def floats(text: str, name: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise ConfigError(f'{name} must be comma-separated numbers such as "0.7,0.1,0.2", got "{text}"') from None


def kind_option(help_text: str):
    """``--kind cxr|fundus``, the embedded default datasets."""
    from latentwalk.data.phantoms import KINDS

    return click.option("--kind", type=click.Choice(list(KINDS)), default="cxr", show_default=True, help=help_text)


def field_default(cls, name: str):
    """The default of a config dataclass field, so that CLI and API defaults cannot drift."""
    return next(f.default for f in fields(cls) if f.name == name)


def demo_default(name: str):
    from latentwalk.demo import DemoConfig

    return field_default(DemoConfig, name)


def field_default_lazy(cls_name: str, name: str, module: str = "latentwalk.guides"):
    """Like :func:`field_default` for a config class of ``module``, imported when the CLI is built."""
    import importlib

    return field_default(getattr(importlib.import_module(module), cls_name), name)


def dataset_option(fn):
    """``--data DIR`` and ``--layout`` for commands that read one dataset."""
    fn = click.option(
        "--layout", default="auto", show_default=True, help="Dataset layout (see latentwalk data check)."
    )(fn)
    return click.option(
        "--data",
        "data_dir",
        required=True,
        type=click.Path(exists=True, path_type=Path),
        help="Dataset folder (any supported layout).",
    )(fn)


GAN_SPEC_HELP = (
    "Generator: demo:cxr, demo:fundus, lite:PATH, stylegan:PATH.pkl, module:pkg.mod:factory, rosinality:PATH.pt, "
    "or a path."
)
