"""Site work as a message: what a remote runner sends a site's node, and how the node
runs it.

A ``SiteTask`` holds a Python function and an attrs config; neither can cross a network
as such, and a hospital must not run whatever a server names. So a remote runner sends
a *task request*, plain JSON (``task_request``):

* the task: its name, its round, the function's ``module:qualname`` and its config as
  JSON;
* the env: the seed, the dataset's shape and attribute names, and the recipe form of
  the arm's model and slot components (``{"kind", "use", "params", <slots>}``);
* the site id it is meant for;

plus the inbound payload as safetensors bytes. The node (``run_task_request``) runs it
only if a plugin installed *on the node* registered that function
(``synthlearn_register_site_tasks``: the allow-list), structures the config into the
registered class strictly, resolves every component from the node's own plugins as a
recipe check would, checks that the request is for this node's site and that the
site's data has the shape the server expects, and returns the payload bytes. Nothing
is unpickled and nothing is imported by name from the request; any problem is one
``SynthlearnError`` naming what is wrong.
"""

from __future__ import annotations

from typing import Any

from synthlearn.errors import RecipeError, SynthlearnError
from synthlearn.loading.code_identity import code_versions
from synthlearn.loading.manager import PluginSet
from synthlearn.params import make_converter
from synthlearn.recipe import Component, ComponentChain, resolve_component
from synthlearn.sitework.cache import SiteCache
from synthlearn.sitework.exchange import Payload
from synthlearn.sitework.site_file import SiteFile
from synthlearn.sitework.sites import SiteEnv, SiteTask

FORMAT = "synthlearn-task"
VERSION = 1
_SEED_LIMIT = 2**63


def component_entry(component: Component | ComponentChain) -> dict[str, Any]:
    """A component in its recipe form with its kind (a chain's parts under ``chain``):
    what a node resolves it from."""
    form = component.to_dict(make_converter())
    if isinstance(form, list):
        return {"kind": component.kind, "chain": form}
    return {"kind": component.kind, **form}


def task_request(task: SiteTask, env: SiteEnv, site_id: int) -> dict[str, Any]:
    """The JSON a remote runner sends with ``task`` for site ``site_id`` (module
    docstring); the inbound payload travels beside it as bytes."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "site": site_id,
        "task": {"name": task.name, "fn": task.fn_path, "round": task.round,
                 "config": make_converter().unstructure(task.config)},
        "env": {
            "seed": env.seed,
            "num_classes": env.num_classes,
            "in_chans": env.in_chans,
            "image_size": list(env.image_size),
            "attributes": [a.name for a in env.attributes],
            "model": None if env.model_component is None
            else component_entry(env.model_component),
            "slots": {slot: component_entry(comp) for slot, comp in sorted(env.slots.items())},
        },
    }


def run_task_request(request: Any, inbound: bytes | None, site_file: SiteFile,
                     plugins: PluginSet, *, store: SiteCache | None = None,
                     progress: bool = False) -> bytes:
    """Run a task request at this node's site (module docstring) and return the
    payload bytes its task produced."""
    if not isinstance(request, dict):
        raise SynthlearnError("task request is not a JSON object")
    if request.get("format") != FORMAT or request.get("version") != VERSION:
        raise SynthlearnError(f"task request format {request.get('format')!r} version "
                              f"{request.get('version')!r}, this node reads {FORMAT!r} "
                              f"version {VERSION}")
    site = site_file.site
    if request.get("site") != site.id:
        raise SynthlearnError(f"task request for site {request.get('site')!r}, this node "
                              f"holds site {site.id}")
    task, env = request.get("task"), request.get("env")
    if not isinstance(task, dict) or not isinstance(env, dict):
        raise SynthlearnError("task request needs 'task' and 'env' objects")
    fn_path = task.get("fn")
    registered = plugins.site_tasks().get(fn_path) if isinstance(fn_path, str) else None
    if registered is None:
        raise SynthlearnError(f"site task {str(fn_path)[:200]!r} is not registered by any "
                              "synthlearn plugin installed on this node (registered: "
                              f"{', '.join(sorted(plugins.site_tasks())) or 'none'})")
    config = _config(registered.spec.config, task.get("config"), fn_path)
    components = _components(env, plugins)
    _check_shape(env, site_file)
    seed = env.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < _SEED_LIMIT:
        raise SynthlearnError(f"task request seed {seed!r} is not an integer in "
                              f"[0, 2^63)")
    model = components.pop("model", None)
    site_env = SiteEnv(
        seed=seed, model_component=model, num_classes=site_file.num_classes,
        in_chans=site.data.images.shape[1], image_size=tuple(site.data.images.shape[2:]),
        progress=progress, attributes=site_file.attributes, slots=components, store=store,
        versions=code_versions(c.registered for comp in [*components.values(),
                                                         *([model] if model else [])]
                               for c in comp.walk()))
    payload_in = None if inbound is None else Payload.from_bytes(inbound, "the server")
    result = registered.spec.fn(site, config, payload_in, site_env)
    if not isinstance(result, Payload):
        raise SynthlearnError(f"site task {fn_path} returned {type(result).__name__}, "
                              "expected synthlearn.api.Payload")
    return result.to_bytes()


def _config(cls: type | None, raw: Any, fn_path: str) -> Any:
    """The task's config, structured strictly into its registered class."""
    if cls is None:
        return raw
    try:
        return make_converter().structure(raw, cls)
    except Exception as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SynthlearnError(f"task request config for {fn_path} does not fit "
                              f"{cls.__name__}: {text}") from None


def _components(env: dict[str, Any], plugins: PluginSet
                ) -> dict[str, Component | ComponentChain]:
    """The request's model and slot components, resolved from this node's plugins."""
    entries: dict[str, Any] = {}
    if env.get("model") is not None:
        entries["model"] = env["model"]
    slots = env.get("slots") or {}
    if not isinstance(slots, dict):
        raise SynthlearnError("task request 'env.slots' is not an object")
    entries.update((slot, entry) for slot, entry in slots.items() if slot != "model")
    out: dict[str, Component | ComponentChain] = {}
    for name, entry in entries.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("kind"), str):
            raise SynthlearnError(f"task request component {name!r} has no kind")
        entry = dict(entry)
        kind = entry.pop("kind")
        if kind not in plugins.components:
            raise SynthlearnError(f"task request component {name!r}: unknown kind {kind!r}")
        if name == "model" and kind != "model":
            raise SynthlearnError(f"task request model is of kind {kind!r}, not a model")
        form = entry["chain"] if set(entry) == {"chain"} else entry
        try:
            out[name] = resolve_component(plugins, kind, form, f"env.{name}")
        except RecipeError as exc:
            raise SynthlearnError(f"task request: {exc.problems[0]}") from None
    return out


def _check_shape(env: dict[str, Any], site_file: SiteFile) -> None:
    """The site's data must have the classes, image shape and attributes the server's
    recipe expects."""
    images = site_file.site.data.images
    here = {"num_classes": site_file.num_classes, "in_chans": int(images.shape[1]),
            "image_size": [int(images.shape[2]), int(images.shape[3])],
            "attributes": sorted(a.name for a in site_file.attributes)}
    there = {"num_classes": env.get("num_classes"), "in_chans": env.get("in_chans"),
             "image_size": env.get("image_size"),
             "attributes": sorted(env.get("attributes") or [])
             if isinstance(env.get("attributes"), list) else env.get("attributes")}
    for key, value in here.items():
        if there[key] != value:
            raise SynthlearnError(f"this site's data has {key} {value}, the server's recipe "
                                  f"expects {there[key]!r}")
