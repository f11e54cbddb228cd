#!/usr/bin/env python
"""Reproduce src/veil/solutions/face_privacy/weights/faceboxes_<mechanism>.pt (issue 17, part 2)
and measure a mechanism against the shipped detector.

Training runs on CPU with the RDCL head frozen, so it caches the head's activations once
(128 x 32 x 32, float16) for a generated training split (seed 1000, disjoint from the seed-0
sets `veil privacy generate --task faces` writes) and trains what follows the split on the cache,
with the images' boxes as targets (multibox loss), under Gaussian noise r * s_c * N(0, 1),
r ~ U[0, --noise) on --noisy-share of the samples, s_c each channel's standard deviation over
the batch (noise at ALPHA a is sqrt(a / (1 - a)) s: 2 at 0.8, 3 at 0.9, 4.4 at 0.95):

- bottleneck: a 1x1 convolution from 128 channels to --channels (initialised to the cache's
  principal components) and one back up (initialised to their inverse), trained with the
  shipped tail;
- deep: split after the second Inception block; the third, the pyramid and the predictors are
  fine-tuned (everything before the split frozen);
- adversarial: the deep split, started from the shipped deep file (--init), with the trusted
  side's two Inception blocks trained too (the RDCL head stays frozen) and an identity
  adversary's term added to the detection loss: --adversary-weight * log(1 + D^2) for
  same-scene identity swaps (render_identity, population seed 1, scenes 70000 + k; the measure
  uses population 0, scenes 90000 + k), D = ||(f(A) - f(B)) / s||, s each channel's standard
  deviation over the batch (the noise's unit).

    python scripts/train_face_mechanisms.py --mechanism bottleneck [--channels 8]
    python scripts/train_face_mechanisms.py --mechanism deep
    python scripts/train_face_mechanisms.py --mechanism adversarial --lr 5e-4
    python scripts/train_face_mechanisms.py --mechanism bottleneck --measure DATA --no-train
    python scripts/train_face_mechanisms.py --mechanism noise --measure DATA   # the baseline

--measure DATA (a `veil privacy generate --task faces` root: test folds and fit/) fits a
Gaussian obfuscator at each --alphas on DATA/fit, then reports the test folds' mAP (mean of the
folds' AP, as veil.solutions.face_privacy._evaluate.run computes it, here on cached head
activations) and the median, over --pairs same-scene identity swaps (fp.render_identity),
of the best two-identity test's accuracy Phi(D/2), D = ||(f(A) - f(B)) / sigma|| with sigma the
obfuscator's per-channel noise (veil.privacy._leakage.two_input_bound).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from veil.privacy import Obfuscator, SplitModel, split_at, train_under_noise
from veil.privacy import mechanisms as mech
from veil.privacy.leakage import gaussian_distance, two_input_bound
from veil.solutions import face_privacy as fp
from veil.solutions.face_privacy import load_image, read_fddb
from veil.solutions.face_privacy import mechanisms as fm

T0 = time.perf_counter()
DEEP_SPLIT = "inception.1"


def say(line: str) -> None:
    print(f"[{time.perf_counter() - T0:6.0f} s] {line}", flush=True)


# ---------------------------------------------------------------------------- the cache
@torch.no_grad()
def cache(head: nn.Module, root: Path, file: Path, batch: int = 8) -> dict:
    """The head's activations (float16), normalised boxes, image sizes and folds of every image
    under `root` (FDDB layout), computed once and kept in `file`."""
    if file.is_file():
        return torch.load(file, weights_only=True)
    ds = read_fddb(root)
    acts, boxes, sizes, folds = [], [], [], []
    ims = [(k, im) for k, fold in enumerate(ds.folds) for im in fold.images]
    for i in range(0, len(ims), batch):
        chunk = ims[i:i + batch]
        arrays = [load_image(im) for _, im in chunk]
        x = torch.stack([fp.to_input(a) for a in arrays])
        acts.append(head(x).half())
        for (k, im), a in zip(chunk, arrays, strict=True):
            h, w = a.shape[:2]
            b = torch.tensor([e.box() for e in im.ellipses], dtype=torch.float32).reshape(-1, 4)
            boxes.append((b / torch.tensor([w, h, w, h], dtype=torch.float32)).clamp_(0, 1))
            sizes.append((h, w))
            folds.append(k)
        if (i // batch) % 20 == 0:
            say(f"caching {root.name}: {i + len(chunk)}/{len(ims)} images")
    out = {"acts": torch.cat(acts), "boxes": boxes, "sizes": torch.tensor(sizes),
           "folds": torch.tensor(folds),
           "ellipses": [[(e.major, e.minor, e.angle, e.cx, e.cy) for e in im.ellipses]
                        for _, im in ims]}
    torch.save(out, file)
    return out


class Batches:
    """Re-iterable (activations float32, [boxes]) batches over a cache, a new order each pass;
    `pre` (frozen) maps the cached activation to the mechanism's input first."""

    def __init__(self, data: dict, batch_size: int, seed: int, shuffle: bool = True,
                 pre: nn.Module | None = None):
        self.data, self.batch_size, self.shuffle, self.pre = data, batch_size, shuffle, pre
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        n = len(self.data["acts"])
        return n // self.batch_size if self.shuffle else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.data["acts"])
        order = self.rng.permutation(n) if self.shuffle else np.arange(n)
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            x = self.data["acts"][torch.as_tensor(idx)].float()
            if self.pre is not None:
                with torch.no_grad():
                    x = self.pre(x)
            yield x, [self.data["boxes"][i] for i in idx]


# ---------------------------------------------------------------------------- mechanisms
def pca_init(model: SplitModel, acts: torch.Tensor, channels: int) -> float:
    """Squeeze = the top principal components of the activation, expand = back (batch norm set
    so that train and eval modes both start as the projection); returns the variance kept."""
    a = acts[:200].float().transpose(0, 1).flatten(1).double()  # (128, N*32*32)
    mu = a.mean(1)
    cov = torch.cov(a)
    vals, vecs = torch.linalg.eigh(cov)
    u = vecs[:, -channels:].flip(1)  # (128, c), largest first
    squeeze = model.head.squeeze
    conv, bn = model.tail.expand[0], model.tail.expand[1]
    with torch.no_grad():
        squeeze.weight.copy_(u.T[:, :, None, None].float())
        squeeze.bias.copy_((-u.T @ mu).float())
        conv.weight.copy_(u[:, :, None, None].float())
        var = torch.diag(u @ torch.diag(vals[-channels:].flip(0)) @ u.T).clamp(min=1e-6)
        bn.running_mean.zero_()
        bn.running_var.copy_(var.float())
        bn.weight.copy_((var + bn.eps).sqrt().float())
        bn.bias.copy_(mu.float())
    return float(vals[-channels:].sum() / vals.sum())


def build(name: str, channels: int) -> tuple[SplitModel, nn.Module, nn.Module, dict]:
    """(the whole mechanism SplitModel, the trusted part after the RDCL head, the untrusted
    tail, its configuration); modules are shared with the SplitModel."""
    base = fp.load_model()
    if name == "noise":
        return base, nn.Sequential(), base.tail, {"split": "head"}
    if name == "bottleneck":
        model = mech.with_bottleneck(base, channels, 128)
        return (model, model.head.squeeze, model.tail,
                {"split": "head", "channels": channels, "in_channels": 128})
    if name in ("deep", "adversarial"):
        model = split_at(fm.layered(base.head.head, base.tail.tail), DEEP_SPLIT,
                         name=fm.NAME)
        return model, model.head.inception, model.tail, {"split": DEEP_SPLIT}
    raise SystemExit(f"no mechanism {name!r}")


def train_adversarial(args, model: SplitModel, data: dict, pairs: torch.Tensor) -> dict:
    """Detection under noise plus weight * log(1 + D^2) over same-scene identity swaps; the
    trusted side's Inception blocks and the tail learn."""
    trusted, tail = model.head.inception, model.tail
    params = [*trusted.parameters(), *tail.parameters()]
    batches = Batches(data, args.batch, args.seed)
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, pct_start=0.15,
                                                total_steps=args.epochs * len(batches))
    gen = torch.Generator().manual_seed(args.seed)
    pick = np.random.default_rng(args.seed)
    history = []
    for epoch in range(args.epochs):
        trusted.eval()  # its batch norms keep their statistics: trained as it is measured
        tail.train()
        dets, pens = [], []
        for step, (x, y) in enumerate(batches):
            z = trusted(x)
            s = z.transpose(0, 1).flatten(1).std(1).clamp(min=1e-6).view(1, -1, 1, 1)
            n = len(z)
            r = torch.rand(n, 1, 1, 1, generator=gen) * args.noise
            r = torch.where(torch.rand(n, 1, 1, 1, generator=gen) < args.noisy_share, r, 0.0)
            det = fp.task_loss(tail(z + r * s * torch.randn(z.shape, generator=gen)), y)
            idx = torch.as_tensor(pick.choice(pairs.shape[1], args.batch, replace=False))
            d = (trusted(pairs[0, idx].float()) - trusted(pairs[1, idx].float())) / s
            pen = torch.log1p(d.pow(2).flatten(1).sum(1)).mean()
            loss = det + args.adversary_weight * pen
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            opt.step()
            sched.step()
            dets.append(float(det.detach()))
            pens.append(float(pen.detach()))
            if step % 10 == 0:
                say(f"epoch {epoch + 1} step {step}/{len(batches)}: detection {dets[-1]:.4f}, "
                    f"log(1 + D^2) {pens[-1]:.3f}")
        history.append((statistics.fmean(dets), statistics.fmean(pens)))
        say(f"epoch {epoch + 1}/{args.epochs}: detection {history[-1][0]:.4f}, "
            f"log(1 + D^2) {history[-1][1]:.3f}")
    model.eval()
    return {"losses": [round(d, 4) for d, _ in history],
            "adversary": [round(p, 4) for _, p in history],
            "adversary_weight": args.adversary_weight, "init": str(args.init)}


def train(args, model: SplitModel, pre: nn.Module, tail: nn.Module, data: dict) -> dict:
    torch.manual_seed(args.seed)
    if args.mechanism == "bottleneck":
        kept = pca_init(model, data["acts"], args.channels)
        say(f"bottleneck {args.channels}: principal components keep {kept:.1%} of the variance")
        trainee = SplitModel(pre, tail)  # squeeze + expand + tail learn
        batches, freeze = Batches(data, args.batch, args.seed), False
    else:
        pre.eval()
        trainee = SplitModel(nn.Sequential(), tail)
        batches, freeze = Batches(data, args.batch, args.seed, pre=pre), True
    losses = train_under_noise(
        trainee, batches, fp.task_loss, epochs=args.epochs, noise_max=args.noise,
        noisy_share=args.noisy_share, distribution="gaussian", freeze_head=freeze, lr=args.lr,
        weight_decay=5e-4, pct_start=0.15, max_grad_norm=10.0, seed=args.seed, log=say)
    model.eval()
    return {"losses": [round(v, 4) for v in losses]}


# ---------------------------------------------------------------------------- measuring
@torch.no_grad()
def mean_ap(pre: nn.Module, tail: nn.Module, data: dict, transform, batch: int = 8) -> float:
    dets = []
    for i in range(0, len(data["acts"]), batch):
        a = pre(data["acts"][i:i + batch].float())
        if transform is not None:
            a = transform(a)
        loc, conf = tail(a)
        dets += fp.postprocess(loc, conf, [tuple(s) for s in data["sizes"][i:i + batch]
                                               .tolist()])
    truths = [[fp.Ellipse(*e) for e in es] for es in data["ellipses"]]
    aps = []
    for k in sorted(set(data["folds"].tolist())):
        idx = [i for i, f in enumerate(data["folds"].tolist()) if f == k]
        if sum(len(truths[i]) for i in idx):
            aps.append(fp.average_precision([dets[i] for i in idx],
                                                  [truths[i] for i in idx]))
    return statistics.fmean(aps)


@torch.no_grad()
def swaps(head: nn.Module, pairs: int, file: Path, population: int = 0,
          scenes: int = 90000) -> torch.Tensor:
    """RDCL activations (2, pairs, 128, 32, 32) of `pairs` scenes, each drawn with two
    identities (scene seeds `scenes` + k, identities 2k and 2k + 1 of `population`)."""
    if file.is_file():
        return torch.load(file, weights_only=True)
    out = []
    for k in range(pairs):
        ims = [fp.render_identity(fp.identity(2 * k + j, population), scenes + k)[0]
               for j in (0, 1)]
        out.append(head(torch.stack([fp.to_input(im) for im in ims])))
        if k % 40 == 0:
            say(f"identity swaps: {k + 1}/{pairs} scenes")
    acts = torch.stack(out, 1)
    if population:
        acts = acts.half()
    torch.save(acts, file)
    return acts


def measure(args, pre: nn.Module, tail: nn.Module, base_head: nn.Module) -> list[dict]:
    work = args.work
    test = cache(base_head, args.measure, work / "cache_test.pt")
    fit = cache(base_head, args.measure / "fit", work / "cache_fit.pt")
    pairs = swaps(base_head, args.pairs, work / f"cache_swaps{args.pairs}.pt")
    pre.eval()
    tail.eval()
    with torch.no_grad():
        delta = pre(pairs[0]) - pre(pairs[1])
    rows = []
    for alpha in [0.0, *args.alphas]:
        transform, bound, dist = None, float("nan"), float("nan")
        if alpha:
            obf = Obfuscator(alpha, "gaussian", epochs=args.fit_epochs, random_state=0)
            obf.fit(SplitModel(pre, tail), Batches(fit, 8, 0, shuffle=False), fp.task_loss)
            transform = obf.transform
            bound = float(two_input_bound(delta, obf.noise_scale_).median())
            dist = float(gaussian_distance(delta, obf.noise_scale_).median())
        torch.manual_seed(0)
        m = mean_ap(pre, tail, test, transform)
        rows.append({"mechanism": args.mechanism, "alpha": alpha, "mAP": round(m, 4),
                     "two_identity_median": round(bound, 4), "D_median": round(dist, 3)})
        say(f"{args.mechanism} ALPHA {alpha:g}: mAP {m:.4f}, median two-identity "
            f"Phi(D/2) {bound:.4f} (D {dist:.2f})")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mechanism", required=True,
                   choices=("bottleneck", "deep", "adversarial", "noise"))
    p.add_argument("--work", type=Path, default=Path("/tmp/veil-face-mechanisms"))
    p.add_argument("--images", type=int, default=600, help="training images (10 folds)")
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--noise", type=float, default=5.0)
    p.add_argument("--noisy-share", type=float, default=0.8)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, help="default: the shipped weights file")
    p.add_argument("--init", type=Path, default=fm.weights_path("deep"),
                   help="adversarial: the deep file it starts from")
    p.add_argument("--train-pairs", type=int, default=160,
                   help="adversarial: same-scene identity swaps it is trained against")
    p.add_argument("--adversary-weight", type=float, default=4.0)
    p.add_argument("--no-train", action="store_true", help="measure the file at --out")
    p.add_argument("--measure", type=Path, help="a faces data root to measure on")
    p.add_argument("--alphas", type=float, nargs="+", default=[0.8, 0.9, 0.95])
    p.add_argument("--fit-epochs", type=int, default=1)
    p.add_argument("--pairs", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    out = args.out or fm.weights_path(args.mechanism)
    model, pre, tail, config = build(args.mechanism, args.channels)
    base_head = fp.load_model().head
    if args.mechanism != "noise" and not args.no_train:
        root = args.work / "train"
        if not root.exists():
            fp.generate(root, seed=1000, images_per_fold=args.images // 10,
                            fit_per_fold=0, attack_per_fold=0)
        data = cache(base_head, root, args.work / "cache_train.pt")
        n = min(args.images, len(data["acts"]))
        data = {k: v[:n] for k, v in data.items()}
        say(f"{n} training activations cached")
        if args.mechanism == "adversarial":
            init = mech.load(fm.NETWORKS["deep"], args.init, name=fm.NAME, mechanism="deep")
            model.load_state_dict(init.state_dict())
            pairs = swaps(base_head, args.train_pairs,
                          args.work / f"cache_train_swaps{args.train_pairs}.pt", 1, 70000)
            info = train_adversarial(args, model, data, pairs)
        else:
            info = train(args, model, pre, tail, data)
        info.update(images=n, epochs=args.epochs, noise_max=args.noise, distribution="gaussian",
                    noisy_share=args.noisy_share, lr=args.lr, seed=args.seed,
                    train_seed=1000, seconds=round(time.perf_counter() - T0),
                    script="scripts/train_face_mechanisms.py")
        out.parent.mkdir(parents=True, exist_ok=True)
        mech.save(model, args.mechanism, config, out, **info)
        say(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    elif args.mechanism != "noise":
        model = fm.load_mechanism(args.mechanism, path=out)
        if args.mechanism == "bottleneck":
            pre, tail = model.head.squeeze, model.tail
        else:
            pre, tail = model.head.inception, model.tail
    if args.measure:
        rows = measure(args, pre, tail, base_head)
        file = args.work / f"figures_{args.mechanism}_{'-'.join(map(str, args.alphas))}.json"
        file.write_text(json.dumps(rows, indent=1))
        say(f"figures in {file}")
    say(f"done in {time.perf_counter() - T0:.0f} s")


if __name__ == "__main__":
    main()
