"""The `stereokit` command line: parse, call one service, render its result with Rich."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.table import Table

from stereokit import __version__
from stereokit.config import StereokitConfig, config_to_yaml, load_config
from stereokit.errors import StereokitError

app = typer.Typer(
    name="stereokit",
    help="Train StereoNet on SceneFlow and carry it to a deployable integer model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
config_app = typer.Typer(help="Inspect the resolved configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")

console = Console()
err_console = Console(stderr=True)

ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config file (defaults: the reference recipe).")
SetOpt = typer.Option([], "--set", help="Override one value: section.key=value (repeatable).")


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A StereokitError becomes one sentence on stderr and its exit code; no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except StereokitError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper


def _config(config: Optional[Path], overrides: list[str]) -> StereokitConfig:
    return load_config(config, overrides)


def _echo_json(payload: Any) -> None:
    typer.echo(json.dumps(payload, indent=2))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"stereokit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Train StereoNet on SceneFlow and carry it to a deployable integer model."""


@config_app.command("show")
@user_errors
def config_show(config: Optional[Path] = ConfigOpt, set_: list[str] = SetOpt) -> None:
    """Print the resolved config as YAML.

    Example: stereokit config show --set model.maxdisp=64
    """
    typer.echo(config_to_yaml(_config(config, set_)), nl=False)


@app.command()
@user_errors
def calops(
    config: Optional[Path] = ConfigOpt,
    set_: list[str] = SetOpt,
    height: Optional[int] = typer.Option(None, "--height", help="Input height (default: deploy.input_height, 544)."),
    width: Optional[int] = typer.Option(None, "--width", help="Input width (default: deploy.input_width, 960)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Count parameters and multiply-accumulates, total and per module.

    Example: stereokit calops --height 544 --width 960
    """
    from stereokit.services.calops import run_calops

    result = run_calops(_config(config, set_), height, width)
    if as_json:
        _echo_json(result.model_dump())
        return
    table = Table(title=f"StereoNet cost at {result.input[0]}x{result.input[1]}")
    table.add_column("module")
    table.add_column("params", justify="right")
    table.add_column("MACs", justify="right")
    table.add_column("share", justify="right")
    for row in result.modules:
        share = row.macs / result.macs if result.macs else 0.0
        table.add_row(row.name, f"{row.params:,}", f"{row.macs / 1e9:.3f} G", f"{share:.1%}")
    table.add_section()
    table.add_row("total", f"{result.params:,}", f"{result.macs / 1e9:.3f} G", "100.0%", style="bold")
    console.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
