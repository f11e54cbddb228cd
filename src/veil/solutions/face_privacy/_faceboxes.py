"""FaceBoxes (Zhang et al., 2017), written for veil: model, anchors, multibox loss, detection.

- Rapidly Digested Convolutional Layers (RDCL): conv 7x7/4 with C.ReLU, max-pool 3x3/2, conv 5x5/2
  with C.ReLU, max-pool 3x3/2. Stride 32, 128 channels: a 1024x1024 image becomes 128x32x32.
  This is the head, the part that runs in the trusted zone; the split is after it.
- Multiple Scale Convolutional Layers (MSCL): three Inception modules, then conv 1x1 + 3x3/2
  twice. Anchors sit on three maps (strides 32, 64, 128): sizes 32, 64 and 128 on the first
  (32 densified 4x and 64 densified 2x along each axis, so 21 anchors per cell), 256 and 512 on
  the others. This is the tail, with its 3x3 box and score predictors.
- Training: each anchor takes the ground-truth box it overlaps most if the IoU is >= 0.35, and
  each ground truth keeps its best anchor; smooth-L1 on encoded offsets (variances 0.1, 0.2);
  cross-entropy with hard negatives mined at 3 per positive.
- Detection: decode, keep scores above a threshold, non-maximum suppression (in torch).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

VARIANCES = (0.1, 0.2)
STRIDES = (32, 64, 128)
SIZES = ((32, 64, 128), (256,), (512,))
DENSITY = {32: 4, 64: 2}


class ConvBN(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, relu: bool = True):
        layers = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout)]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class CReLU(nn.Module):
    """Conv + BN, then concatenated with its negation and rectified: twice the channels."""

    def __init__(self, cin: int, cout: int, k: int, stride: int):
        super().__init__()
        self.conv = ConvBN(cin, cout, k, stride, relu=False)

    def forward(self, x):
        x = self.conv(x)
        return F.relu(torch.cat([x, -x], 1))


class Inception(nn.Module):
    """Four branches of 32 channels each: 1x1; pool + 1x1; 1x1 + 3x3; 1x1 + 3x3 + 3x3."""

    def __init__(self, cin: int = 128):
        super().__init__()
        self.b1 = ConvBN(cin, 32, 1)
        self.b2 = ConvBN(cin, 32, 1)
        self.b3 = nn.Sequential(ConvBN(cin, 24, 1), ConvBN(24, 32, 3))
        self.b4 = nn.Sequential(ConvBN(cin, 24, 1), ConvBN(24, 32, 3), ConvBN(32, 32, 3))

    def forward(self, x):
        pooled = F.avg_pool2d(x, 3, 1, 1)
        return torch.cat([self.b1(x), self.b2(pooled), self.b3(x), self.b4(x)], 1)


def rdcl() -> nn.Sequential:
    """The head: image (N, 3, H, W), values in [0, 1], to (N, 128, H/32, W/32)."""
    return nn.Sequential(
        _Normalize(),
        CReLU(3, 24, 7, 4), nn.MaxPool2d(3, 2, 1),
        CReLU(48, 64, 5, 2), nn.MaxPool2d(3, 2, 1),
    )


class _Normalize(nn.Module):
    def forward(self, x):
        return (x - 0.5) * 4.0


def anchors_per_cell(level: int) -> int:
    return sum(DENSITY.get(s, 1) ** 2 for s in SIZES[level])


class MSCL(nn.Module):
    """The tail: (N, 128, h, w) to box offsets (N, A, 4) and face/background logits (N, A, 2)."""

    def __init__(self):
        super().__init__()
        self.inception = nn.Sequential(Inception(), Inception(), Inception())
        self.conv3 = nn.Sequential(ConvBN(128, 128, 1), ConvBN(128, 256, 3, 2))
        self.conv4 = nn.Sequential(ConvBN(256, 128, 1), ConvBN(128, 256, 3, 2))
        chans = (128, 256, 256)
        self.loc = nn.ModuleList(nn.Conv2d(c, anchors_per_cell(i) * 4, 3, 1, 1)
                                 for i, c in enumerate(chans))
        self.conf = nn.ModuleList(nn.Conv2d(c, anchors_per_cell(i) * 2, 3, 1, 1)
                                  for i, c in enumerate(chans))

    def forward(self, x):
        return predict(self, self.inception(x))


def predict(mscl: nn.Module, first: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MSCL after its Inception blocks: `first` (the Inception output) and the maps conv3 and
    conv4 make of it, each read by `mscl`'s box and score predictors."""
    maps = [first]
    maps.append(mscl.conv3(maps[0]))
    maps.append(mscl.conv4(maps[1]))
    n = first.shape[0]
    loc = torch.cat([h(m).permute(0, 2, 3, 1).reshape(n, -1, 4)
                     for h, m in zip(mscl.loc, maps, strict=True)], 1)
    conf = torch.cat([h(m).permute(0, 2, 3, 1).reshape(n, -1, 2)
                      for h, m in zip(mscl.conf, maps, strict=True)], 1)
    return loc, conf


def faceboxes() -> nn.Sequential:
    """The whole network as one Sequential ("head" then "tail"), so `split_at(net, "head")`
    gives the SplitModel whose activation is the RDCL output."""
    return nn.Sequential(_named(head=rdcl(), tail=MSCL()))


def _named(**modules):
    from collections import OrderedDict

    return OrderedDict(modules)


def feature_sizes(height: int, width: int) -> list[tuple[int, int]]:
    """The three anchor maps' (h, w) for an input of this size (the convolutions' arithmetic)."""
    def down(v, k, s):
        return (v + 2 * (k // 2) - k) // s + 1

    h, w = height, width
    for k, s in ((7, 4), (3, 2), (5, 2), (3, 2)):
        h, w = down(h, k, s), down(w, k, s)
    out = [(h, w)]
    for _ in range(2):
        h, w = down(h, 3, 2), down(w, 3, 2)
        out.append((h, w))
    return out


def priors(height: int, width: int) -> torch.Tensor:
    """Anchors (A, 4) as (cx, cy, w, h), normalised by the image size, in the order the tail
    predicts them: per map, per cell (row-major), per anchor size and densified offset."""
    out = []
    for level, (fh, fw) in enumerate(feature_sizes(height, width)):
        step = STRIDES[level]
        for i in range(fh):
            for j in range(fw):
                for size in SIZES[level]:
                    d = DENSITY.get(size, 1)
                    offs = [(k + 0.5) / d for k in range(d)]
                    for oy in offs:
                        for ox in offs:
                            out.append(((j + ox) * step / width, (i + oy) * step / height,
                                        size / width, size / height))
    return torch.tensor(out, dtype=torch.float32)


# ---------------------------------------------------------------------- boxes
def to_corners(b: torch.Tensor) -> torch.Tensor:
    return torch.cat([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], 1)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU matrix of corner boxes a (N, 4) and b (M, 4)."""
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(2)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(1)
    return inter / (area_a[:, None] + area_b[None] - inter).clamp(min=1e-12)


def encode(matched: torch.Tensor, pri: torch.Tensor) -> torch.Tensor:
    """Corner boxes matched to each prior, as the offsets the tail learns to predict."""
    centre = (matched[:, :2] + matched[:, 2:]) / 2
    size = (matched[:, 2:] - matched[:, :2]).clamp(min=1e-6)
    return torch.cat([(centre - pri[:, :2]) / (VARIANCES[0] * pri[:, 2:]),
                      torch.log(size / pri[:, 2:]) / VARIANCES[1]], 1)


def decode(loc: torch.Tensor, pri: torch.Tensor) -> torch.Tensor:
    """Predicted offsets back to corner boxes (normalised)."""
    centre = pri[:, :2] + loc[:, :2] * VARIANCES[0] * pri[:, 2:]
    size = pri[:, 2:] * torch.exp((loc[:, 2:] * VARIANCES[1]).clamp(max=math.log(1000.0)))
    return torch.cat([centre - size / 2, centre + size / 2], 1)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou: float = 0.3) -> torch.Tensor:
    """Indices of the boxes kept by greedy non-maximum suppression, highest score first."""
    order = scores.argsort(descending=True)
    keep = []
    if len(order) == 0:
        return order
    overlaps = box_iou(boxes[order], boxes[order])
    suppressed = torch.zeros(len(order), dtype=torch.bool, device=boxes.device)
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= overlaps[i] > iou
    return order[torch.tensor(keep, dtype=torch.long, device=boxes.device)]


def match(truths: torch.Tensor, pri: torch.Tensor, threshold: float = 0.35):
    """(encoded box targets (A, 4), labels (A,) 1 for face, 0 for background)."""
    if len(truths) == 0:
        return torch.zeros(len(pri), 4, device=pri.device), torch.zeros(
            len(pri), dtype=torch.long, device=pri.device)
    overlaps = box_iou(truths, to_corners(pri))  # (T, A)
    best_truth_iou, best_truth = overlaps.max(0)
    best_prior = overlaps.argmax(1)
    best_truth_iou[best_prior] = 2.0  # every face keeps its best anchor
    best_truth[best_prior] = torch.arange(len(truths), device=pri.device)
    labels = (best_truth_iou >= threshold).long()
    return encode(truths[best_truth], pri), labels


def multibox_loss(loc: torch.Tensor, conf: torch.Tensor, targets: list[torch.Tensor],
                  pri: torch.Tensor, neg_pos: int = 3) -> torch.Tensor:
    """Smooth-L1 on positives plus cross-entropy on positives and mined hard negatives, both
    divided by the number of positives. `targets`: per image, normalised corner boxes (T, 4)."""
    matched = [match(t.to(pri.device), pri) for t in targets]
    loc_t = torch.stack([m[0] for m in matched])
    labels = torch.stack([m[1] for m in matched])
    pos = labels > 0
    n_pos = int(pos.sum())
    loss_l = F.smooth_l1_loss(loc[pos], loc_t[pos], reduction="sum")
    ce = F.cross_entropy(conf.reshape(-1, 2), labels.reshape(-1), reduction="none").view_as(labels)
    mining = ce.detach().clone()
    mining[pos] = 0
    rank = mining.argsort(1, descending=True).argsort(1)
    n_neg = (neg_pos * pos.sum(1, keepdim=True)).clamp(max=pos.shape[1] - 1)
    n_neg = torch.where(pos.sum(1, keepdim=True) == 0, torch.full_like(n_neg, neg_pos), n_neg)
    neg = rank < n_neg
    loss_c = ce[pos | neg].sum()
    return (loss_l + loss_c) / max(n_pos, 1)


def detect(loc: torch.Tensor, conf: torch.Tensor, pri: torch.Tensor, height: int, width: int,
           *, score_threshold: float = 0.05, nms_iou: float = 0.3, top_k: int = 750,
           keep: int = 300) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per image: (boxes (K, 4) in pixels as x1, y1, x2, y2; scores (K,)), best first."""
    scale = torch.tensor([width, height, width, height], dtype=loc.dtype, device=loc.device)
    out = []
    probs = F.softmax(conf, -1)[..., 1]
    for b in range(loc.shape[0]):
        s = probs[b]
        idx = (s > score_threshold).nonzero().squeeze(1)
        idx = idx[s[idx].argsort(descending=True)[:top_k]]
        boxes = decode(loc[b, idx], pri[idx]) * scale
        k = nms(boxes, s[idx], nms_iou)[:keep]
        out.append((boxes[k], s[idx][k]))
    return out
