"""What every arm that learns from synthetic images shares: fit a generator at a site,
draw a pool of synthetic images from it, load a generator a site sent.

The built-in ``synthetic`` arm and plugin arms (``kr``) use these, and they are public
(``synthlearn.api``). A site fits its generator once: ``fit_site_generator`` keeps the
fit at the site (``SiteEnv.memo``) under the generator, the conditioning, the site's
data and a seed derived from the site task's seed. The task's *name* enters that seed,
so arms share fits by naming the site task that fits the generator ``SHARED_FIT_TASK``;
an arm that wants its own fits names its task otherwise.

Everything a site sends is checked before use: ``draw_pool`` checks each chunk a
generator returns, ``checked_n_real`` the image count a site claims
(``synthlearn.sitework.received`` has the tensor and count checks).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from synthlearn.arms.site_privacy import dp_component, site_private_training
from synthlearn.data.types import ImageData
from synthlearn.errors import SynthlearnError
from synthlearn.generation.share_size import CLASS_BALANCES
from synthlearn.models.private import PrivateTraining
from synthlearn.params import fitting_params, make_converter
from synthlearn.sitework.exchange import Payload
from synthlearn.sitework.received import received_count
from synthlearn.sitework.sites import Site, SiteEnv, derive_seed

#: The name of the site task in which an arm fits its generators with
#: ``fit_site_generator``. The fit's seed derives from the task's, so every arm that
#: names its fitting task so (the ``synthetic`` and ``kr`` arms do) fits one generator per
#: site for the same generator, conditioning and data, and the others reuse it.
SHARED_FIT_TASK = "synthesize"

#: Where a generator fitted under DP keeps its privacy record (``PrivateTraining.record``)
#: in its state's meta: the generator that leaves the site carries the ε it cost.
PRIVACY_KEY = "privacy"

#: What an arm that conditions on the sites' statistics releases outside a DP budget
#: (for ``PrivacyLedger.summary``).
STATISTICS_OUTSIDE_BUDGET = ("each site's conditioning statistics (class counts, attribute "
                             "aggregates) and image count")

#: Images per call to a generator's ``sample``.
SAMPLE_CHUNK = 512

def _fit_key(site: Site, env: SiteEnv) -> dict[str, Any]:
    """What determines a site's generator fit (``SiteEnv.memo``'s ``parts``)."""
    conv = make_converter()
    generator = env.slots["generator"].to_dict(conv)
    # params that only change how images are drawn (``sampling_field``) do not change the fit
    generator["params"] = fitting_params(env.slots["generator"].config, generator["params"])
    return {
        "fit": "generator",
        "generator": generator,
        "conditioning": env.slots["conditioning"].to_dict(conv),
        "data": site.data.fingerprint(),
        "seed": derive_seed(env.seed, "fit"),
        "shape": [env.num_classes, env.in_chans, list(env.image_size)],
        # a fit under DP differs; without one the key is what it always was
        **({"dp": dp.to_dict(conv)} if (dp := dp_component(env.slots)) else {}),
    }



def describe_slots(slots: Mapping[str, Any]) -> dict[str, Any]:
    """``{"components": ...}``: the arm's sub-components (``env.slots``: generator,
    conditioning, ...) in their recipe form (``use`` and ``params``; a list of them for a
    chain of filters), for a site output's metadata, so a saved generator says how to
    rebuild it (``synthlearn sample`` reads it)."""
    conv = make_converter()
    return {"components": {slot: comp.to_dict(conv) for slot, comp in sorted(slots.items())}}



def generator_label(component: Any) -> str:
    """``generator 'gan' (synthlearn-gan)``: a recipe's generator component by its
    ``use`` and the distribution that registered it, for error messages."""
    registered = getattr(component, "registered", None)
    distribution = getattr(registered, "distribution", None)
    return f"generator {component.use!r}" + (f" ({distribution})" if distribution else "")



def _sample_problem(images: Any, n: int, image_shape: tuple[int, ...] | None) -> str | None:
    """What is wrong with one chunk a generator's ``sample`` returned for ``n``
    conditions (``image_shape``: the (C, H, W) it must have, when known), or None."""
    want = ", ".join(map(str, image_shape)) if image_shape else "C, H, W"
    expected = f"expected uint8 ({n}, {want}), one image per condition"
    if not isinstance(images, np.ndarray):
        return f"sample returned {type(images).__name__}, {expected}"
    if (images.dtype != np.uint8 or images.ndim != 4 or images.shape[0] != n
            or (image_shape is not None and images.shape[1:] != tuple(image_shape))):
        return f"sample returned {images.dtype} {tuple(images.shape)}, {expected}"
    return None



def balanced_stats(stats: dict[str, Any], where: str | None = None) -> dict[str, Any]:
    """``stats`` with its ``class_counts`` made equal (1 for every class the site has, 0
    for the others), so a scheme's ``sample`` draws the same number of every class the
    site has (largest remainder: the first classes get one more when ``n`` does not
    divide) and the attributes given each class as before. A class the site lacks stays
    absent: its generator never saw it. Statistics without ``class_counts`` (a plugin
    scheme's own) are a ``SynthlearnError``: the built-in schemes keep them."""
    counts = stats.get("class_counts")
    if not isinstance(counts, list):
        raise SynthlearnError("class_balance: equal needs conditioning statistics with "
                              "'class_counts' (the categorical and phenotypic schemes keep "
                              "them)", where=where)
    return {**stats, "class_counts": [1 if count else 0 for count in counts]}


def pool_subset(pool_size: int, size: int, seed: int, index: int) -> np.ndarray:
    """Indices (sorted) of set ``index`` taken from a pool of ``pool_size`` synthetic
    images: ``size`` of them (at most the pool) without replacement, seeded by ``seed``
    and ``index``. An arm that draws one large pool per site instead of a set per epoch
    (``pool: K``) takes every set this way, the same at the site and at the server."""
    size = min(size, pool_size)
    rng = np.random.default_rng(derive_seed(seed, "pool-set", index))
    return np.sort(rng.choice(pool_size, size, replace=False))


def render_conditions(generator: Any, scheme: Any, stats: dict[str, Any], labels: np.ndarray,
                      attributes: Mapping[str, np.ndarray], seed: int, *,
                      label: str = "generator", image_shape: tuple[int, ...] | None = None,
                      where: str | None = None, max_bytes: int | None = None) -> np.ndarray:
    """uint8 images (N, C, H, W) from ``generator``, one for each of the ``labels`` and
    ``attributes`` (N values each), deterministic in ``seed``: encoded by ``scheme`` and
    sampled ``SAMPLE_CHUNK`` at a time. Every chunk the generator returns is checked
    (uint8, (N, C, H, W), one image per condition, the ``image_shape`` when given, the
    same shape throughout); a broken rule is a ``SynthlearnError`` naming ``label`` and
    ``where``. ``max_bytes`` bounds the images, checked once the first chunk shows their
    size. ``draw_pool`` draws the conditions first; a filter's redraw re-renders the
    conditions of the rejected candidates."""
    n = len(labels)
    images: np.ndarray | None = None
    for i, start in enumerate(range(0, n, SAMPLE_CHUNK)):
        index = np.arange(start, min(n, start + SAMPLE_CHUNK))
        part = scheme.encode(labels[index], {k: np.asarray(v)[index]
                                             for k, v in attributes.items()}, stats)
        try:
            chunk = generator.sample(part, derive_seed(seed, "z", i))
        except SynthlearnError as exc:  # the generator's own refusal, e.g. its conditions
            raise SynthlearnError(f"{label}: {exc.message}", where=exc.where or where
                                  ) from None
        problem = _sample_problem(chunk, len(index), image_shape)
        if problem:
            raise SynthlearnError(f"{label}: {problem}", where=where)
        if images is None:
            image_shape = tuple(chunk.shape[1:])
            size = n * math.prod(image_shape)
            if max_bytes is not None and size > max_bytes:
                raise SynthlearnError(f"{n} images of shape {image_shape} take {size:,} "
                                      f"bytes, more than the {max_bytes:,} allowed",
                                      where=where)
            images = np.empty((n, *image_shape), dtype=np.uint8)
        images[start:start + len(index)] = chunk
    assert images is not None
    return images


def draw_pool(generator: Any, scheme: Any, stats: dict[str, Any], n: int, seed: int, *,
              label: str = "generator", image_shape: tuple[int, ...] | None = None,
              where: str | None = None, max_bytes: int | None = None,
              class_balance: str = "site") -> ImageData:
    """``n`` synthetic images whose conditions follow ``stats``, deterministic in ``seed``.

    ``class_balance`` ``site`` (the default) draws the classes in the site's proportions,
    ``equal`` the same number of every class the site has (``balanced_stats``); the
    attributes follow the site's statistics given the class either way.

    The images are rendered by ``render_conditions`` (checked chunk by chunk; ``label``,
    ``where``, ``image_shape`` and ``max_bytes`` are its).
    """
    if n < 1:
        raise SynthlearnError(f"cannot draw {n} synthetic images", where=where)
    if class_balance not in CLASS_BALANCES:
        raise SynthlearnError(f"class_balance must be one of {', '.join(CLASS_BALANCES)}, "
                              f"got {class_balance!r}", where=where)
    drawn_from = balanced_stats(stats, where) if class_balance == "equal" else stats
    labels, attributes = scheme.sample(drawn_from, n,
                                       np.random.default_rng(derive_seed(seed, "c")))
    labels = np.asarray(labels)
    if (labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer)
            or any(np.shape(v) != (n,) for v in attributes.values())):
        raise SynthlearnError(f"conditioning {type(scheme).__name__}: sample returned labels "
                              f"{labels.dtype} {labels.shape}, expected integers ({n},) and "
                              f"one value per image for each attribute", where=where)
    images = render_conditions(generator, scheme, stats, labels, attributes, seed,
                               label=label, image_shape=image_shape, where=where,
                               max_bytes=max_bytes)
    return ImageData(images=images, labels=labels,
                     attributes={k: np.asarray(v, np.float32) for k, v in attributes.items()})



def generator_dp_steps(component: Any, n: int) -> tuple[int, int]:
    """``(batch size, steps)`` of the private part of the fit of the recipe's generator
    ``component`` on ``n`` images (its ``dp_steps``); a generator that cannot fit under
    DP (``synthlearn.interfaces.PrivatelyFitted``) is one ``SynthlearnError``."""
    generator = component.build()
    if not callable(getattr(generator, "dp_steps", None)):
        raise SynthlearnError(f"{generator_label(component)} cannot fit under DP (it has no"
                              " dp_steps; see synthlearn.interfaces.PrivatelyFitted)")
    if "private" not in inspect.signature(generator.fit).parameters:
        raise SynthlearnError(f"{generator_label(component)} has dp_steps but its fit takes"
                              " no 'private' plan (synthlearn.interfaces.PrivatelyFitted)")
    batch_size, steps = generator.dp_steps(n)
    return int(batch_size), int(steps)


def fit_site_generator(site: Site, env: SiteEnv, private: PrivateTraining | None = None
                       ) -> tuple[Any, dict[str, Any], Payload]:
    """Site work shared by every arm that synthesises: summarise the site's labels and
    attributes with the arm's conditioning scheme (``env.slots["conditioning"]``) and
    fit the arm's generator (``env.slots["generator"]``) on the site's images, once.

    The fit is kept at the site (``SiteEnv.memo``) under its generator, conditioning,
    data and seed; the seed derives from the task's, so arms whose task is named
    ``SHARED_FIT_TASK`` share one fit per site. Returns the scheme, its statistics and
    the fitted generator's state (a ``Payload``: what ``share: generator`` sends).

    With a ``dp`` slot in the arm the generator fits under differential privacy: the
    plan comes from its ``dp_steps`` (``synthlearn.interfaces.PrivatelyFitted``), and
    the state's meta carries the site's privacy record under ``PRIVACY_KEY``. An arm
    whose sites train more than the generator under one budget plans the phases itself
    (``site_private_phases``) and passes the generator's as ``private``."""
    scheme = env.slots["conditioning"].build()
    stats = scheme.summarize(site.data, env.num_classes, env.attributes)

    dp = dp_component(env.slots)
    if dp is not None and private is None:
        private = site_private_training(
            env, len(site.data), *generator_dp_steps(env.slots["generator"], len(site.data)))

    def fit() -> Payload:
        generator = env.slots["generator"].build()
        conditions = scheme.encode(site.data.labels, site.data.attributes, stats)
        generator.fit(site.data, conditions, env.num_classes, derive_seed(env.seed, "fit"),
                      progress=env.progress, desc=f"site {site.id}: fit generator",
                      **({"private": private} if private is not None else {}))
        state = generator.state()
        if private is None:
            return state
        return Payload(state.tensors, {**state.meta, PRIVACY_KEY: private.record()})

    parts = (env.slots["generator"], env.slots["conditioning"], *([dp] if dp else []))
    key = _fit_key(site, env)
    if private is not None:  # the same dp slot may plan other noise (e.g. with a teacher)
        key["private"] = private.key()
    return scheme, stats, env.memo(key, fit, components=parts)



def load_generator(component: Any, state: Payload, source: str) -> Any:
    """A generator built from its recipe ``component`` (``env.slots["generator"]`` at a
    site, ``ctx.arm.component.slots["generator"]`` at the server) with ``state`` loaded:
    a site's fitted weights, checked by the generator's own ``load`` (``source`` names
    them in errors)."""
    generator = component.build()
    generator.load(state, source)
    return generator



def checked_n_real(meta: dict[str, Any], stats: dict[str, Any], limit: int, source: str
                   ) -> int:
    """The site's image count ``n_real`` (it sizes the synthetic sets drawn for it):
    1..``limit``, and the sum of ``stats['class_counts']`` where the scheme keeps them.
    Check ``stats`` first (``synthlearn.generation.conditioning.check_stats``)."""
    n_real = received_count(meta, "n_real", 1, limit, source)
    counts = stats.get("class_counts")
    if isinstance(counts, list) and sum(counts) != n_real:
        raise SynthlearnError(f"n_real is {n_real}, but the class counts add up to "
                              f"{sum(counts)}", where=source)
    return n_real
