"""Does the noise or the DP discriminator collapse a DP gan? Fit the gan's DP
discriminator at one PneumoniaMNIST site with given noise multipliers (0: clipping,
Poisson batches and the spectral projection only) and print the samples' fidelity.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dp_gan_noise.py \
        --data ../shared/data/pneumoniamnist.npz --sigmas 0 1.0 [--steps 1000]

One site: the first ``--n`` training images (default 809, a third of the shared file);
the gan as in templates/recipes/dp-utility.yaml (width 16, batch 32); fidelity of 800
samples (classes alternating) against the test split: Fréchet distance in the project's
fixed feature space, k-NN precision and recall (synthlearn.evaluation.fidelity).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from synthlearn.api import ImageData, PrivateTraining
from synthlearn.evaluation.fidelity import fidelity
from synthlearn.testing import class_conditions, installed
from synthlearn_dp.config import OpacusConfig
from synthlearn_dp.mechanism import OpacusMechanism


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="pneumoniamnist.npz (MedMNIST format)")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.0, 1.0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--n", type=int, default=809)
    args = parser.parse_args()

    with np.load(args.data) as npz:
        images = npz["train_images"][: args.n][:, None].astype(np.uint8)
        labels = npz["train_labels"][: args.n].reshape(-1).astype(np.int64)
        test = npz["test_images"][:, None].astype(np.uint8)
    site = ImageData(images, labels)
    spec = installed("generator", "gan").spec
    for sigma in args.sigmas:
        gan = spec.factory(spec.config(steps=args.steps, width=16, batch_size=32))
        plan = PrivateTraining(OpacusMechanism(OpacusConfig()), "opacus", sigma,
                               32 / len(site), args.steps)
        start = time.perf_counter()
        gan.fit(site, class_conditions(labels), 2, 0, progress=False, private=plan)
        samples = gan.sample(class_conditions(np.arange(800) % 2), 0)
        figures = fidelity(test, samples)
        print(f"sigma {sigma:g}: epsilon {plan.epsilon():.3g} at delta 1e-5, "
              f"{time.perf_counter() - start:.0f} s, "
              + json.dumps({k: round(float(figures[k]), 3)
                            for k in ("fd", "precision", "recall")}), flush=True)


if __name__ == "__main__":
    main()
