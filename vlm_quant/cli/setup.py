"""`vlm-quant setup`: one-time installs of optional scorers (today: SPICE's Stanford CoreNLP jars)."""

from __future__ import annotations

import click

from vlm_quant.errors import UserError


@click.group()
def setup() -> None:
    """Install what an optional metric needs, once per environment."""


@setup.command("spice")
@click.option(
    "--from",
    "source",
    default=None,
    type=click.Path(),
    help="Offline: a folder holding the two CoreNLP 3.6.0 jars, or stanford-corenlp-full-2015-12-09.zip. "
    "Without it the zip is downloaded from nlp.stanford.edu (~390 MB).",
)
def spice_command(source: str | None) -> None:
    """Install and check the Stanford CoreNLP 3.6.0 jars SPICE needs (into pycocoevalcap's spice/lib)."""
    from vlm_quant.cli.vqa import _fail
    from vlm_quant.tasks.caption_metrics import missing_spice_jars
    from vlm_quant.tasks.spice_setup import install_spice_jars

    try:
        installed = install_spice_jars(source)
    except UserError as exc:
        _fail(str(exc))
    for path in installed:
        click.echo(f"installed {path} ({path.stat().st_size / 2**20:.0f} MiB)")
    missing = missing_spice_jars()
    if missing:
        _fail(f"SPICE still misses {', '.join(missing)} (its manifest names them).")
    click.echo("SPICE is ready: captioning runs now score it (spice=auto or spice=on).")
