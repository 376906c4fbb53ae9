"""Golden FROC values from a Python transcription of the DeepLesion reference evaluation, for Facet's
`froc` metric (metrics/froc.cpp).

The transcription below follows the reference's counting (3DCE / MULAN `detection_eval.py`, the
same in SATr's `evaluation_metrics.py`; medical.md §B.7): detections pooled over images and sorted by
score; a detection whose best IoU (+1-pixel widths) with its image's lesions is < 0.5 is a false
positive, otherwise it hits every not-yet-hit lesion with IoU >= 0.5; sensitivity at FPs/image by
scipy's interp1d on the (FP/image, sensitivity) curve, the last sensitivity past the curve's end.

Writes tests/fixtures/detection/froc_golden.json: a list of cases, each
  {"name", "images": [{"gt": [[x1, y1, x2, y2], ...], "det": [[x1, y1, x2, y2, score], ...], "thickness"}],
   "fps": [...], "sens": [...] (all images), "sens_thin": [...] (thickness <= 2 mm),
   "sens_thick": [...] (thickness 5 mm)}
Scores are distinct, so the order of the pooled detections does not depend on a sort's tie rule.
"""
import json
import os

import numpy as np
from scipy import interpolate

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "detection", "froc_golden.json")
FPS = [0.5, 1, 2, 4, 8, 16]


def overlaps_plus_one(box, gts):
    ix1 = np.maximum(gts[:, 0], box[0])
    iy1 = np.maximum(gts[:, 1], box[1])
    ix2 = np.minimum(gts[:, 2], box[2])
    iy2 = np.minimum(gts[:, 3], box[3])
    inter = np.maximum(ix2 - ix1 + 1.0, 0.0) * np.maximum(iy2 - iy1 + 1.0, 0.0)
    area = (box[2] - box[0] + 1.0) * (box[3] - box[1] + 1.0)
    areas = (gts[:, 2] - gts[:, 0] + 1.0) * (gts[:, 3] - gts[:, 1] + 1.0)
    return inter / (area + areas - inter)


def froc(dets, gts, iou_th=0.5):
    n_img = len(dets)
    owner = np.hstack([[i] * len(d) for i, d in enumerate(dets)]).astype(int)
    pooled = np.vstack([d for d in dets if len(d)])
    order = np.argsort(pooled[:, 4], kind="stable")[::-1]
    pooled, owner = pooled[order, :4], owner[order]
    hit = [np.zeros(len(g), dtype=bool) for g in gts]
    n_hit = n_miss = 0
    tps, fps = [], []
    for k in range(len(pooled)):
        o = overlaps_plus_one(pooled[k], gts[owner[k]])
        if len(o) == 0 or o.max() < iou_th:
            n_miss += 1
        else:
            for j in range(len(o)):
                if o[j] >= iou_th and not hit[owner[k]][j]:
                    hit[owner[k]][j] = True
                    n_hit += 1
        tps.append(n_hit)
        fps.append(n_miss)
    n_gt = sum(len(g) for g in gts)
    return np.array(tps, float) / n_gt, np.array(fps, float) / n_img


def sens_at(dets, gts, levels):
    sens, fp = froc(dets, gts)
    inside = [a for a in levels if a <= fp[-1]]
    outside = [a for a in levels if a > fp[-1]]
    f = interpolate.interp1d(fp, sens)
    return [float(v) for v in np.hstack([f(np.array(inside)), np.ones(len(outside)) * sens[-1]])]


def make_case(rng, n_img, fp_rate, name):
    images = []
    for i in range(n_img):
        n_gt = int(rng.integers(1, 4))
        xy = rng.uniform(0, 400, (n_gt, 2))
        wh = rng.uniform(8, 60, (n_gt, 2))
        gt = np.hstack([xy, xy + wh])
        dets = []
        for g in gt:
            for _ in range(int(rng.integers(0, 3))):  # near-misses and hits, some duplicates
                w, h = g[2] - g[0], g[3] - g[1]
                jitter = rng.normal(0, 0.12, 4) * np.array([w, h, w, h])
                dets.append(np.append(g + jitter, rng.uniform(0.3, 1.0)))
        for _ in range(int(rng.poisson(fp_rate))):
            xy = rng.uniform(0, 400, 2)
            wh = rng.uniform(8, 60, 2)
            dets.append(np.append(np.hstack([xy, xy + wh]), rng.uniform(0.0, 0.8)))
        dets = np.array(dets).reshape(-1, 5)
        images.append({"gt": gt, "det": dets, "thickness": float(rng.choice([1.0, 2.0, 5.0]))})
    # Distinct scores (kept distinct by the 6 decimals the fixture stores): each detection's rank among all.
    raw = np.hstack([im["det"][:, 4] for im in images])
    rank = np.empty(len(raw))
    rank[np.argsort(raw, kind="stable")] = np.arange(len(raw))
    k = 0
    for im in images:
        im["det"][:, 4] = (rank[k:k + len(im["det"])] + 1) / (len(raw) + 1)
        k += len(im["det"])
    case = {"name": name, "fps": FPS}
    for key, keep in [("sens", lambda t: True), ("sens_thin", lambda t: t <= 2.0), ("sens_thick", lambda t: t == 5.0)]:
        sub = [im for im in images if keep(im["thickness"])]
        case[key] = sens_at([im["det"] for im in sub], [im["gt"] for im in sub], FPS)
    case["images"] = [{"gt": im["gt"].round(3).tolist(), "det": im["det"].round(6).tolist(), "thickness": im["thickness"]}
                      for im in images]
    return case


def main():
    rng = np.random.default_rng(13)
    cases = []
    for name, n_img, fp_rate in [("busy", 40, 12.0), ("sparse", 30, 1.5), ("few_images", 5, 30.0)]:
        case = make_case(rng, n_img, fp_rate, name)
        # Recompute on the rounded values the fixture stores, so the C++ side reads exactly these inputs.
        imgs = case["images"]
        dets = [np.array(im["det"], float).reshape(-1, 5) for im in imgs]
        gts = [np.array(im["gt"], float).reshape(-1, 4) for im in imgs]
        case["sens"] = sens_at(dets, gts, FPS)
        for key, keep in [("sens_thin", lambda t: t <= 2.0), ("sens_thick", lambda t: t == 5.0)]:
            idx = [i for i, im in enumerate(imgs) if keep(im["thickness"])]
            case[key] = sens_at([dets[i] for i in idx], [gts[i] for i in idx], FPS)
        cases.append(case)
        print(name, ["%.4f" % s for s in case["sens"]])
    with open(OUT, "w") as f:
        json.dump(cases, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
