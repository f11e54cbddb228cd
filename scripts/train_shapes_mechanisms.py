#!/usr/bin/env python
"""Train the shapes task's mechanisms (issue 17, part 2) and measure them.

    train_shapes_mechanisms.py --mechanism bottleneck [--channels 8] [--out PATH] [--epochs N]
    train_shapes_mechanisms.py --mechanism deep [--split relu6]
    train_shapes_mechanisms.py --mechanism adversarial [--init BOTTLENECK_FILE] [--lambda-rec ..]
    train_shapes_mechanisms.py --measure FILE|base ... --data DIR [--alphas 0.8 0.9 0.95]

On images generated in memory (seed 2024 for training, 2025 for validation: disjoint from
`veil privacy generate` and from the probe seeds 101-103), on CPU.

- bottleneck: the shipped weights (split relu4, head frozen in eval mode), a 1x1 convolution down
  to `--channels` after the head and one back up before the tail (_mechanisms.with_bottleneck);
  the squeeze, the expand and the whole tail trained with veil.privacy.train_under_noise,
  Gaussian noise of 0 to `--noise-max` x each channel's standard deviation (over the batch) for
  `--noisy-share` of the images, which covers the obfuscator's levels from ALPHA 0.8 (2x if
  spread evenly) to 0.98 (7x) and its uneven channels.
- deep: the shipped weights split at `--split` (relu6: 192 x 4 x 4 for a 32x32 image); the head
  frozen, the rest fine-tuned under the same noise (the channel deviations measured once).
- adversarial: head, bottleneck and tail (from `--init`, a bottleneck mechanism file) trained by
  veil.privacy._adversarial.train_adversarial against an inversion decoder and position, colour
  and texture classifiers, Gaussian noise of `--adv-noise` x std injected; then the tail alone
  (head frozen) trained under the bottleneck's noise range, so it reads the obfuscator's levels.

--measure prints, per mechanism and ALPHA (Obfuscator(alpha, "gaussian", random_state=0).fit on
the first --fit-images of the data's fit split), the clean and noisy test accuracy (noisy: mean
of 3 draws), the attacker's position, colour and texture probes (train_probe on
probe_images(3000, 101), tested on probe_images(1000, 102)) and the median two-input bound over
moved_pairs(500, 103).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch
from torch.nn.functional import cross_entropy
from train_shapes import Batches  # scripts/ is on sys.path when a script runs

from veil.privacy import mechanisms as mech
from veil.privacy import shapes_cnn, shapes_images, split_at, train_under_noise
from veil.privacy.shapes import SHAPES_WEIGHTS, load_model, task_loss

WEIGHTS = Path(SHAPES_WEIGHTS).parent
OUT = {m: WEIGHTS / f"shapes_{m}.pt" for m in ("bottleneck", "adversarial", "deep")}
NAME = "shapes-cnn"


def network() -> torch.nn.Sequential:
    return shapes_cnn()


def as_tensor(xs) -> torch.Tensor:
    return torch.from_numpy(xs).permute(0, 3, 1, 2).float().div_(255)




def accuracy(model, x: torch.Tensor, y: torch.Tensor, transform=None) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), 500):
            a = model.forward_head(x[i:i + 500])
            if transform is not None:
                a = transform(a)
            correct += int((model.forward_tail(a).argmax(1) == y[i:i + 500]).sum())
    return correct / len(x)


def pin_eval(module: torch.nn.Module) -> None:
    """Keep `module` (and its batch-norm statistics) in eval mode and out of training, whatever
    its parent's train() says."""
    module.eval()
    module.train = lambda mode=True: module  # type: ignore[method-assign]
    for p in module.parameters():
        p.requires_grad_(False)


def channel_std(model, x: torch.Tensor, n: int = 4000) -> torch.Tensor:
    with torch.no_grad():
        model.head.eval()
        a = torch.cat([model.forward_head(x[i:i + 500]) for i in range(0, min(n, len(x)), 500)])
    return a.transpose(0, 1).flatten(1).std(1)


def printer(label: str):
    return lambda line: print(f"{label} {line}", flush=True)


def train_bottleneck(args, x, y, val):
    model = mech.with_bottleneck(load_model(), args.channels, 64)
    pin_eval(model.head.base)
    train_under_noise(model, Batches(x, y, args.seed), cross_entropy, epochs=args.epochs,
                      lr=args.lr, weight_decay=1e-4, noise_max=args.noise_max,
                      noisy_share=args.noisy_share, distribution="gaussian",
                      freeze_head=False, max_grad_norm=5.0, seed=args.seed,
                      validate=lambda m: accuracy(m, *val), log=printer("bottleneck"))
    return model, {"split": "relu4", "channels": args.channels, "in_channels": 64}


def train_deep(args, x, y, val):
    net = network()
    net.load_state_dict(torch.load(SHAPES_WEIGHTS, map_location="cpu", weights_only=True))
    model = split_at(net, args.split, name=NAME)
    train_under_noise(model, Batches(x, y, args.seed), cross_entropy, epochs=args.epochs,
                      lr=args.lr, weight_decay=1e-4, noise_max=args.noise_max,
                      noisy_share=args.noisy_share, distribution="gaussian",
                      channel_std=channel_std(model, x), freeze_head=True, max_grad_norm=5.0,
                      seed=args.seed, validate=lambda m: accuracy(m, *val),
                      log=printer("deep"))
    return model, {"split": args.split}


def train_adversarial_mechanism(args, x, y, labels, val):
    from veil.privacy.mechanisms import AdversarialConfig, train_adversarial
    from veil.privacy.shapes import moved_pairs

    model = mech.load(network, args.init, name=NAME, mechanism="bottleneck")
    config = dict(model_config(args.init))
    attrs = {"position": 9, "colour": 8, "texture": 3}
    cfg = AdversarialConfig(epochs=args.epochs, noise=args.adv_noise, lambda_rec=args.lambda_rec,
                            lambda_attr=args.lambda_attr, lambda_pair=args.lambda_pair,
                            lr=args.lr, seed=args.seed, attributes=attrs)
    pairs = None
    if args.lambda_pair > 0:
        a, b = moved_pairs(args.images // 4, args.seed + 7)
        pairs = (as_tensor(a), as_tensor(b))
    # no mirroring here: it would change the position labels
    train_adversarial(model, x, y, {k: torch.as_tensor(labels[k]) for k in attrs}, cfg,
                      pairs=pairs, validate=lambda m: accuracy(m, *val),
                      log=printer("adversarial"))
    # the tail alone, head frozen, under the obfuscator's range of noise levels
    pin_eval(model.head)
    train_under_noise(model, Batches(x, y, args.seed + 1), cross_entropy,
                      epochs=args.tail_epochs, lr=args.lr, weight_decay=1e-4,
                      noise_max=args.noise_max, noisy_share=args.noisy_share,
                      distribution="gaussian", channel_std=channel_std(model, x),
                      freeze_head=True, max_grad_norm=5.0, seed=args.seed + 1,
                      validate=lambda m: accuracy(m, *val), log=printer("adversarial tail"))
    return model, config


def model_config(path) -> dict:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    return blob["config"]


# ---------------------------------------------------------------------- measure
def load_any(spec: str):
    if spec == "base":
        return load_model()
    return mech.load(network, spec, name=NAME)


def heads(model):
    return lambda v: torch.cat([model.forward_head(v[i:i + 500]) for i in range(0, len(v), 500)])


def measure(args) -> None:
    from veil.privacy import Obfuscator
    from veil.privacy.leakage import Units, train_probe, two_input_bound
    from veil.privacy.shapes import moved_pairs, probe_images, read_split

    xf, yf = read_split(args.data, "train")
    xf, yf = xf[:args.fit_images], yf[:args.fit_images]
    xt, yt = read_split(args.data, "test")
    loader = [(xf[i:i + 128], yf[i:i + 128]) for i in range(0, len(xf), 128)]
    ptr, ltr = probe_images(3000, 101)
    pte, lte = probe_images(1000, 102)
    ptr, pte = as_tensor(ptr), as_tensor(pte)
    pa, pb = (as_tensor(v) for v in moved_pairs(500, 103))
    base_clean = accuracy(load_model(), xt, yt)
    rows = []
    for spec in args.measure:
        t0 = time.time()
        model = load_any(spec).eval()
        clean = accuracy(model, xt, yt)
        with torch.no_grad():
            head = heads(model)
            units_tr = Units(head(ptr), torch.arange(len(ptr)), None,
                             {k: torch.as_tensor(v) for k, v in ltr.items()})
            units_te = Units(head(pte), torch.arange(len(pte)), None,
                             {k: torch.as_tensor(v) for k, v in lte.items()})
            delta = head(pa) - head(pb)
        for alpha in args.alphas:
            obf = Obfuscator(alpha, "gaussian", random_state=0).fit(model, loader, task_loss)
            noisy = sum(accuracy(model, xt, yt, obf.transform) for _ in range(3)) / 3
            probes = {}
            for name, k in (("position", 9), ("colour", 8), ("texture", 3)):
                s = train_probe(units_tr, units_te, name, k, obf.transform, seed=0,
                                epochs=args.probe_epochs)
                probes[name] = (s.accuracy, s.chance, s.majority)
            bound = float(two_input_bound(delta, obf.noise_scale_).median())
            row = {"mechanism": spec if spec == "base" else Path(spec).stem, "alpha": alpha,
                   "clean": clean, "noisy": noisy, "of_clean": noisy / base_clean,
                   "position": probes["position"][0],
                   "position_adv": probes["position"][0] - probes["position"][1],
                   "colour": probes["colour"][0],
                   "colour_adv": probes["colour"][0] - probes["colour"][2],
                   "texture": probes["texture"][0],
                   "texture_adv": probes["texture"][0] - probes["texture"][2],
                   "two_input_median": bound}
            rows.append(row)
            print(json.dumps(row), flush=True)
        print(f"measured {spec} in {time.time() - t0:.0f} s (base clean {base_clean:.4f})",
              flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mechanism", choices=sorted(OUT))
    p.add_argument("--out", type=Path)
    p.add_argument("--images", type=int, help="training images (default: 8000; adversarial 4000)")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--epochs", type=int, help="epochs (default: 6; adversarial 2)")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--noise-max", type=float, default=12.0, help="x channel std")
    p.add_argument("--noisy-share", type=float, default=0.75)
    p.add_argument("--channels", type=int, default=8, help="bottleneck channels")
    p.add_argument("--split", default="relu6", help="deep: the split layer")
    p.add_argument("--init", type=Path, default=OUT["bottleneck"],
                   help="adversarial: the bottleneck mechanism it starts from")
    p.add_argument("--adv-noise", type=float, default=2.0, help="adversarial: x channel std")
    p.add_argument("--lambda-rec", type=float, default=5.0)
    p.add_argument("--lambda-attr", type=float, default=0.3)
    p.add_argument("--lambda-pair", type=float, default=1.0)
    p.add_argument("--tail-epochs", type=int, default=3, help="adversarial: tail epochs after")
    p.add_argument("--measure", nargs="+", metavar="FILE|base")
    p.add_argument("--data", type=Path, help="--measure: a `veil privacy generate` folder")
    p.add_argument("--alphas", type=float, nargs="+", default=[0.8, 0.9, 0.95])
    p.add_argument("--probe-epochs", type=int, default=20)
    p.add_argument("--fit-images", type=int, default=4000,
                   help="--measure: the obfuscator is fitted on the first N fit images")
    p.add_argument("--json", type=Path, help="--measure: write the rows here too")
    args = p.parse_args()
    if args.measure:
        if not args.data:
            p.error("--measure needs --data")
        measure(args)
        return
    if not args.mechanism:
        p.error("name a --mechanism or --measure")
    adversarial = args.mechanism == "adversarial"
    args.images = args.images or (4000 if adversarial else 8000)
    args.epochs = args.epochs or (2 if adversarial else 6)
    torch.manual_seed(args.seed)
    t0 = time.time()
    from veil.privacy.shapes import probe_images

    xs, labels = probe_images(args.images, args.seed)
    x, y = as_tensor(xs), torch.as_tensor(labels["class"])
    xv, yv = shapes_images(2000, args.seed + 1)
    val = (as_tensor(xv), torch.from_numpy(yv))
    print(f"generated {len(x)} + {len(val[0])} images in {time.time() - t0:.1f}s", flush=True)
    if args.mechanism == "bottleneck":
        model, config = train_bottleneck(args, x, y, val)
    elif args.mechanism == "deep":
        model, config = train_deep(args, x, y, val)
    else:
        model, config = train_adversarial_mechanism(args, x, y, labels, val)
    seconds = time.time() - t0
    acc = accuracy(model, *val)
    out = args.out or OUT[args.mechanism]
    out.parent.mkdir(parents=True, exist_ok=True)
    command = " ".join(["scripts/train_shapes_mechanisms.py"] + [shlex.quote(a)
                                                               for a in sys.argv[1:]])
    mech.save(model, args.mechanism, config, out, epochs=args.epochs, seconds=round(seconds),
              command=command, images=args.images, seed=args.seed, validation=acc)
    print(f"{args.mechanism}: validation accuracy {acc:.4f}; {seconds:.0f} s; wrote {out} "
          f"({out.stat().st_size / 1e6:.2f} MB)", flush=True)


if __name__ == "__main__":
    main()
