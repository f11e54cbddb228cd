"""FaceBoxes: shapes at the split, anchors, box coding, NMS, matching, loss and detection."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from veil.privacy import split_at  # noqa: E402
from veil.solutions.face_privacy._faceboxes import (  # noqa: E402
    box_iou,
    decode,
    detect,
    encode,
    faceboxes,
    match,
    multibox_loss,
    nms,
    priors,
    to_corners,
)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return faceboxes().eval()


def test_split_after_the_rdcl_sends_128x32x32_for_1024(net):
    model = split_at(net, "head", name="faceboxes")
    with torch.no_grad():
        a = model.forward_head(torch.rand(1, 3, 1024, 1024))
    assert a.shape == (1, 128, 32, 32)
    assert sum(p.numel() for p in net.parameters()) * 4 < 5e6  # float32 weights under 5 MB


@pytest.mark.parametrize("h, w", [(1024, 1024), (1080, 1920), (300, 450), (257, 311)])
def test_one_prior_per_prediction(net, h, w):
    with torch.no_grad():
        loc, conf = net(torch.rand(1, 3, h, w))
    pri = priors(h, w)
    assert loc.shape == (1, len(pri), 4) and conf.shape == (1, len(pri), 2)
    if (h, w) == (1024, 1024):
        assert len(pri) == 21824  # 32x32x21 + 16x16 + 8x8
    # densified 32-pixel anchors of the first cell tile it 4 x 4
    first = pri[:16] * torch.tensor([w, h, w, h])
    assert sorted({round(float(v), 3) for v in first[:, 0]}) == [4.0, 12.0, 20.0, 28.0]
    assert torch.all(first[:, 2:] == 32)


def test_encode_decode_round_trip():
    pri = torch.tensor([[0.5, 0.5, 0.1, 0.2], [0.2, 0.3, 0.05, 0.05]])
    boxes = torch.tensor([[0.42, 0.35, 0.61, 0.72], [0.18, 0.27, 0.23, 0.31]])
    assert torch.allclose(decode(encode(boxes, pri), pri), boxes, atol=1e-6)


def reference_nms(boxes, scores, iou):
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    keep = []
    for i in order:
        if all(float(box_iou(boxes[i:i + 1], boxes[k:k + 1])) <= iou for k in keep):
            keep.append(i)
    return keep


def test_nms_matches_a_plain_reference():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    assert nms(boxes, scores, 0.3).tolist() == [3, 2]
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        xy = torch.rand(40, 2, generator=g) * 100
        wh = torch.rand(40, 2, generator=g) * 30 + 1
        b = torch.cat([xy, xy + wh], 1)
        s = torch.rand(40, generator=g)
        assert nms(b, s, 0.3).tolist() == reference_nms(b, s, 0.3)
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.3).tolist() == []


def test_every_face_keeps_its_best_anchor():
    pri = priors(256, 256)
    # a tiny face no anchor overlaps by 0.35 still gets one positive anchor
    truths = torch.tensor([[0.1, 0.1, 0.14, 0.14], [0.4, 0.4, 0.65, 0.65]])
    loc_t, labels = match(truths, pri)
    ious = box_iou(truths, to_corners(pri))
    best = ious.argmax(1)
    assert labels[best].tolist() == [1, 1]
    assert float(ious[0].max()) < 0.35  # forced: below the threshold
    # below the threshold only the forced anchor is positive; the targets decode to the faces
    assert int(labels[ious.max(0).values < 0.35].sum()) == 1
    assert torch.allclose(decode(loc_t[best], pri[best]), truths, atol=1e-5)
    pos = labels.nonzero().squeeze(1)
    assert torch.all(box_iou(decode(loc_t[pos], pri[pos]), truths).max(1).values > 0.99)
    _, none = match(torch.zeros(0, 4), pri)
    assert int(none.sum()) == 0


def test_training_on_one_image_finds_the_face():
    torch.manual_seed(0)
    net = faceboxes()
    img = torch.full((1, 3, 256, 256), 0.2)
    img[:, :, 96:160, 112:160] = 0.9  # a bright 48x64 "face"
    img[:, 0, 110:120, 120:130] = 0.1
    img[:, 0, 110:120, 142:152] = 0.1
    truth = torch.tensor([[112, 96, 160, 160]]) / 256.0
    pri = priors(256, 256)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    net.train()
    for _ in range(40):
        loc, conf = net(img)
        loss = multibox_loss(loc, conf, [truth], pri)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.3 * losses[0]
    net.eval()
    with torch.no_grad():
        (boxes, scores), = detect(*net(img), pri, 256, 256)
    assert len(boxes) >= 1 and torch.all(scores[:-1] >= scores[1:])
    assert float(box_iou(boxes[:1], truth * 256)) > 0.5
