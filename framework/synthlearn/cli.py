"""The ``synthlearn`` command: ``plugins``, ``validate``, ``run``, ``sites export``,
``sample``, ``schema`` and ``describe``.

A mistake the user can fix prints one line (``error: <where>: <what>``) and exits with
status 2; a recipe with several problems prints one line per problem. A file-system
failure (permission, disk full, ...) is one line naming the file, status 2. A bug (any
other exception) is one line saying where it happened, status 1. ``--debug`` adds the
full traceback to every error. SIGINT exits with status 130 and SIGTERM with 143, after
the run has removed what it wrote.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType, TracebackType

from synthlearn import __version__, notices
from synthlearn.components import KINDS
from synthlearn.errors import RecipeError, SynthlearnError
from synthlearn.loading.manager import PluginSet, load_plugins

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports a pipeline cut short


class Terminated(BaseException):
    """SIGTERM arrived: raised in the main thread so that a run unwinds (removing its
    unfinished directory) exactly as it does on Ctrl-C."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synthlearn",
        description="Compare centralized, local, federated and synthetic learning "
        "from one YAML recipe.",
    )
    parser.add_argument("--version", action="version", version=f"synthlearn {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="print the full traceback of any error (for plugin authors)")
    # also accepted after the command; SUPPRESS keeps it from resetting the global flag
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="print the full traceback of any error (for plugin authors)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("plugins", parents=[common],
                       help="list installed plugins and their components")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    overrides = argparse.ArgumentParser(add_help=False, parents=[common])
    overrides.add_argument("recipe", help="path to a recipe YAML file")
    overrides.add_argument("--set", dest="overrides", action="append", default=[],
                           metavar="PATH=VALUE",
                           help="override a recipe value, e.g. --set model.params.epochs=3 "
                           "or --set arms[1].params.rounds=10 (repeatable)")

    sub.add_parser("validate", parents=[overrides],
                   help="check a recipe and its data; print ok or one line per problem")

    p = sub.add_parser("run", parents=[overrides], help="run a recipe and write its report")
    p.add_argument("--out", help="run directory (default: <output.dir>/<name>-<time>)")
    p.add_argument("--quiet", action="store_true", help="no progress output")

    p = sub.add_parser("sites", help="site data as files of their own (for deployment)")
    sites_sub = p.add_subparsers(dest="sites_command", required=True, metavar="ACTION")
    e = sites_sub.add_parser("export", parents=[overrides],
                             help="write each site of the recipe's partition to its own "
                             "file (DIR/site-<id>.safetensors) and DIR/sites.json")
    e.add_argument("--out", required=True, help="a new (or empty) folder")

    p = sub.add_parser("sample", parents=[common],
                       help="draw images from a generator a site sent "
                       "(artifacts/<arm>/site-N-generator.safetensors of a run)")
    p.add_argument("generator", help="path to a site's generator file")
    p.add_argument("--n", type=int, default=64, help="how many images (default 64)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--out", required=True,
                   help="output file: .png (example grid per class) or .npz (arrays)")

    p = sub.add_parser("schema", parents=[common],
                       help="print the JSON Schema of recipes (with every installed "
                       "plugin's params) or of metrics.json")
    p.add_argument("what", choices=("recipe", "metrics"), help="which schema")

    p = sub.add_parser("describe", parents=[common],
                       help="a component's summary, params (type, default, doc), slots "
                       "and distribution")
    p.add_argument("kind", nargs="?", help=f"one of {', '.join(KINDS)}")
    p.add_argument("name", nargs="?", help="the component's name (what `use:` says)")
    p.add_argument("--markdown", action="store_true",
                   help="the params as the Markdown table the docs carry")
    p.add_argument("--update-docs", nargs="+", metavar="FILE", default=None,
                   help="regenerate the tables between <!-- params:KIND:NAME --> and "
                   "<!-- /params --> in FILEs")
    return parser


def _schema(args: argparse.Namespace, plugins: PluginSet) -> int:
    if args.what == "metrics":
        from synthlearn.execution.results import metrics_schema

        schema = metrics_schema()
    else:
        from synthlearn.schema.recipe_schema import recipe_schema

        schema = recipe_schema(plugins)
    print(json.dumps(schema, indent=2, ensure_ascii=False))
    return 0


def _describe(args: argparse.Namespace, plugins: PluginSet) -> int:
    from pathlib import Path

    from synthlearn.schema import describe

    if args.update_docs is not None:
        if args.kind or args.name:
            raise SynthlearnError("describe: give either KIND NAME or --update-docs FILE...")
        changed = describe.update_docs([Path(p) for p in args.update_docs], plugins)
        print(f"updated: {', '.join(changed)}" if changed else "every table is current")
        return 0
    if not args.kind or not args.name:
        raise SynthlearnError(f"describe: give KIND NAME (KIND: {', '.join(KINDS)})")
    comp = describe.lookup(plugins, args.kind, args.name)
    print(describe.describe_markdown(comp) if args.markdown
          else describe.describe_text(comp), end="\n" if not args.markdown else "")
    return 0


def _sample(args: argparse.Namespace, plugins: PluginSet) -> int:
    from synthlearn.generation.generator_file import open_generator, save_samples

    if args.n < 1:
        raise SynthlearnError(f"--n must be at least 1, got {args.n}")
    if args.seed < 0:
        raise SynthlearnError(f"--seed must be >= 0, got {args.seed}")
    saved = open_generator(args.generator, plugins)
    data = saved.draw(args.n, args.seed)
    names = [f"class {c}" for c in range(int(saved.stats.get("num_classes", 0)))]
    save_samples(data, args.out, names, args.seed)
    print(f"{len(data)} images, classes {data.class_counts(len(names))} -> {args.out}")
    return 0


def _plugins_table(plugins: PluginSet) -> str:
    lines = ["plugins:"]
    rows = [(p.name, p.distribution, p.version, "ok" if p.ok else f"BROKEN: {p.error}")
            for p in plugins.plugins]
    widths = [max(len(r[i]) for r in rows + [("plugin", "distribution", "version", "")])
              for i in range(3)]
    header = ("plugin", "distribution", "version", "status")
    for row in [header, *rows]:
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False))
                     + "  " + row[3])
    lines.append("")
    lines.append("components:")
    for kind in KINDS:
        comps = plugins.components[kind]
        if not comps:
            lines.append(f"  {kind}: (none installed)")
            continue
        lines.append(f"  {kind}:")
        width = max(len(n) for n in comps)
        for name in sorted(comps):
            comp = comps[name]
            lines.append(f"    {name.ljust(width)}  {comp.spec.summary}  [{comp.distribution}]")
    if plugins.problems:
        lines.append("")
        lines.append("problems:")
        lines.extend(f"  {problem}" for problem in plugins.problems)
    return "\n".join(lines)


def _plugins_json(plugins: PluginSet) -> str:
    return json.dumps({
        "plugins": [
            {"name": p.name, "distribution": p.distribution, "version": p.version,
             "module": p.module, "ok": p.ok, "error": p.error}
            for p in plugins.plugins
        ],
        "components": {
            kind: [
                {"name": name, "distribution": c.distribution, "plugin": c.plugin,
                 "summary": c.spec.summary,
                 "config": f"{c.spec.config.__module__}.{c.spec.config.__qualname__}"}
                for name, c in sorted(plugins.components[kind].items())
            ]
            for kind in KINDS
        },
        "problems": plugins.problems,
    }, indent=2)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    args = _parser().parse_args(argv)
    return run_as_command(lambda: _dispatch(args), debug=bool(getattr(args, "debug", False)))


def run_as_command(action: Callable[[], int], *, debug: bool = False) -> int:
    """Run ``action`` the way the ``synthlearn`` command runs a subcommand and return the
    exit status: a user mistake (a bad recipe, a missing file) is one line per problem on
    stderr, an interrupt says that finished site work stays cached, and a bug names
    where it happened (the traceback with ``debug``). Scripts such as
    ``benchmarks/seeds.py`` use it to behave like the command."""
    try:
        with _sigterm_raises():
            return action()
    except RecipeError as exc:
        _traceback(debug)
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_USER_ERROR
    except SynthlearnError as exc:
        _traceback(debug)
        print(f"error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:  # the reader left (`synthlearn schema recipe | head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes at exit
        return EXIT_BROKEN_PIPE
    except OSError as exc:  # the file system: permission, disk full, a file in the way
        _traceback(debug)
        print(f"error: {_os_error(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted; finished site work stays cached", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print("terminated; finished site work stays cached", file=sys.stderr)
        return EXIT_TERMINATED
    except Exception as exc:  # a bug, in the core or in a plugin
        _traceback(debug)
        where = _where(exc.__traceback__)
        print(f"error: internal error{f' in {where}' if where else ''}: "
              f"{type(exc).__name__}: {_one_line(str(exc))}"
              f"{'' if debug else ' (run with --debug for the traceback)'}", file=sys.stderr)
        return EXIT_INTERNAL_ERROR


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While the command runs, SIGTERM raises ``Terminated`` in the main thread (a
    second SIGTERM is ignored so the clean-up can finish); the old handler comes back
    afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _traceback(debug: bool) -> None:
    """With ``--debug``, print the traceback of the exception being handled."""
    if debug:
        traceback.print_exc(file=sys.stderr)


def _one_line(text: str, limit: int = 500) -> str:
    """The first non-empty line of ``text``, at most ``limit`` characters."""
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[:limit - 3] + "..."


def _os_error(exc: OSError) -> str:
    """``<file>: <reason>`` for a file-system error (``<reason>`` when it names none)."""
    reason = exc.strerror or _one_line(str(exc)) or type(exc).__name__
    names = [os.fsdecode(n) for n in (exc.filename, exc.filename2) if n is not None]
    return f"{' -> '.join(names)}: {reason}" if names else reason


def _where(tb: TracebackType | None) -> str | None:
    """``module.function`` of the innermost frame in synthlearn or a plugin (code not
    from the standard library or an installed package), or None."""
    where = None
    for frame, _ in traceback.walk_tb(tb):
        module = frame.f_globals.get("__name__", "")
        path = frame.f_code.co_filename
        ours = module.split(".")[0].startswith("synthlearn") or not (
            module.split(".")[0] in sys.stdlib_module_names
            or "site-packages" in path or "dist-packages" in path or path.startswith("<"))
        if ours and module != __name__:
            code = frame.f_code
            where = f"{module}.{getattr(code, 'co_qualname', code.co_name)}"
    return where


def _dispatch(args: argparse.Namespace) -> int:
    plugins = load_plugins()
    if args.command != "run":  # a run gives them itself, into its metrics.json warnings
        for line in plugins.deprecations:
            notices.warn(line)
    if args.command == "plugins":
        print(_plugins_json(plugins) if args.json else _plugins_table(plugins))
        return 1 if plugins.problems else 0
    plugins.raise_problems()
    if args.command == "sample":
        return _sample(args, plugins)
    if args.command == "schema":
        return _schema(args, plugins)
    if args.command == "describe":
        return _describe(args, plugins)

    from synthlearn.recipe import load_recipe

    recipe = load_recipe(args.recipe, plugins, args.overrides)
    from synthlearn.execution.run import Run, load_data

    if args.command == "sites":
        from synthlearn.sitework.site_file import export_sites

        dataset, sites = load_data(recipe)
        manifest = export_sites(sites, dataset, recipe.name, recipe.seed, Path(args.out))
        for entry in manifest["sites"]:
            print(f"site {entry['site']}: {entry['n']} images, classes "
                  f"{entry['class_counts']} -> {Path(args.out) / entry['file']}")
        print(f"held-out splits (for the server, with data: exported) -> "
              f"{Path(args.out) / manifest['server']['file']}")
        print(f"manifest -> {Path(args.out) / 'sites.json'}")
        return 0
    if args.command == "validate":
        from synthlearn.execution.run_dir import output_problems

        dataset, sites = load_data(recipe)
        problems = output_problems(recipe)
        if problems:
            raise RecipeError(problems)
        arms = f"{len(recipe.arms)} arm{'' if len(recipe.arms) == 1 else 's'}"
        print(f"ok ({dataset.name}: {dataset.n_train} training images over "
              f"{len(sites)} sites, {len(dataset.test)} test images; {arms})")
        return 0

    Run(recipe, plugins, quiet=args.quiet).execute(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
