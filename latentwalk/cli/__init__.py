"""The ``latentwalk`` command line: a thin click layer over the Python API.

Every command builds a configuration, calls the library and prints where things went. Errors meant for users
(:class:`latentwalk.errors.LatentwalkError`) become one ``Error:`` line and exit code 2; ``--debug`` shows the
traceback.
"""

from __future__ import annotations

import click

from latentwalk import __version__
from latentwalk.cli.common import EXIT_USER_ERROR, CliGroup, UserError
from latentwalk.cli.data import data
from latentwalk.cli.demo import demo
from latentwalk.cli.evaluate import evaluate_cmd
from latentwalk.cli.gan import gan
from latentwalk.cli.generate import generate_cmd, walk_cmd
from latentwalk.cli.guides import guides
from latentwalk.cli.ksame import ksame_command
from latentwalk.cli.weights import weights

__all__ = ["EXIT_USER_ERROR", "UserError", "cli", "main"]


@click.group(cls=CliGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="latentwalk")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.pass_context
def cli(ctx: click.Context, debug: bool, quiet: bool) -> None:
    """Anonymised synthetic medical image datasets from a privacy-preserving walk in a GAN's latent space.

    \b
    Start with:
      latentwalk demo                      # the whole job on the embedded phantom data
      latentwalk data phantoms --kind cxr --out data/cxr
      latentwalk data check data/cxr
    """
    ctx.meta["latentwalk.debug"] = debug
    ctx.meta["latentwalk.quiet"] = quiet


for _command in (data, gan, guides, ksame_command, generate_cmd, walk_cmd, evaluate_cmd, weights, demo):
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="latentwalk")
