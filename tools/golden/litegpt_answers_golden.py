"""LiteGPT's answers from the VinDr-CXR CSVs, for data/vindr_cxr/litegpt_answers.* (medical.md §1.5).

A transcription of the reference (leduckhai/LiteGPT @1828e4c: medlvlm/modules/preprocess_label.py,
medlvlm/datasets/datasets/vindrcxr_dataset.py, medlvlm/common/eval_utils.py computeIoU) with the
standard library in place of pandas: the same greedy overlap grouping, drop-duplicates keeping the
first CSV row, numpy's round-half-to-even of coord / side * 100, the Python set of global indices,
the "No finding" substring rule. The local items come from a Python set in the reference (arbitrary
order), so they are written sorted.

Writes under tests/fixtures/litegpt_answers/:
  annotations/annotations_train.csv, image_labels_train.csv   hand-built, several readers
  annotations/annotations_test.csv, image_labels_test.csv     test layout ("Other disease", no rad_id)
  sizes.csv                                                   image_id,width,height
  expected.json                                               per split and image: global, local items,
                                                              grounded; the prompts
"""
import csv
import itertools
import json
import os
from collections import defaultdict

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "tests", "fixtures", "litegpt_answers")

LOCAL = ["Aortic enlargement", "Atelectasis", "Calcification", "Cardiomegaly", "Clavicle fracture", "Consolidation",
         "Edema", "Emphysema", "Enlarged PA", "ILD", "Infiltration", "Lung Opacity", "Lung cavity", "Lung cyst",
         "Mediastinal shift", "Nodule/Mass", "Pleural effusion", "Pleural thickening", "Pneumothorax",
         "Pulmonary fibrosis", "Rib fracture", "Other lesion"]
GLOBAL_FILE_ORDER = ["COPD", "Lung tumor", "Pneumonia", "Tuberculosis", "Other diseases", "No finding"]

# The reference's instruction pool at @1828e4c, with its missing comma.
INSTRUCTION_POOL = [
    "[grounding] please describe this image in details with radiological features. Use two sentences unless there are no findings. The first sentence should list the global diseases present in the image, and the second should list local diseases with localized bounding boxes.",
    "[grounding] please describe this image in details with radiological features. Use two sentences unless there are no findings. The first sentence should list the global diseases present in the image, and the second should list local diseases with localized bounding boxes. Let's think step by step.",
    "[grounding] This is a radiological image of a chest x-ray from a Posterior Anterior view. Examine all the areas where the lung borders the diaphragm, the heart and other mediastinal structures. Please describe this image in details with radiological features. Use two sentences unless there are no findings. The first sentence should list the global diseases present in the image, and the second should list local diseases with localized bounding boxes.",
    "[grounding] This is a radiological image of a chest x-ray from a Posterior Anterior view. Examine all the areas where the lung borders the diaphragm, the heart and other mediastinal structures. Please describe this image in details with radiological features. Use two sentences unless there are no findings. The first sentence should list the global diseases present in the image, and the second should list local diseases with localized bounding boxes. Let's think step by step.",
    "[grounding] Please describe this image in details with radiological features. Use one sentence unless there are no findings. The sentence should list the global diseases present in the image."
    "[grounding] This is a radiological image of a chest x-ray from a Posterior Anterior view. Examine all the areas where the lung borders  the diaphragm, the heart and other mediastinal structures. Please describe this image in details with radiological features. Use one sentence unless there are no findings. The sentence should list the  global diseases present in the image."
]
VQA_PROMPT = "[vqa] Given the provided chest X-ray image, which of the following diagnoses are present (select all that apply): COPD, Lung Tumor, Pneumonia, Tuberculosis, Other Disease, or No Finding?"

SIZES = {"img_a": (1000, 800), "img_b": (800, 1000), "img_c": (1000, 1000), "img_d": (2000, 1600),
         "img_e": (1000, 1000), "img_t1": (1000, 1000), "img_t2": (640, 480)}

# (image, reader, class, box or None)
TRAIN_BOXES = [
    # A: R1 says normal; R2 and R3 mark the same heart; R3 also two separate nodules, one with a
    # half-even rounding case (125/1000 -> 12.5 -> 12, 135/1000 -> 13.5 -> 14)
    ("img_a", "R1", "No finding", None),
    ("img_a", "R2", "Cardiomegaly", (300, 400, 700, 600)),
    ("img_a", "R3", "Cardiomegaly", (310, 405, 705, 610)),
    ("img_a", "R3", "Nodule/Mass", (125, 100, 135, 140)),
    ("img_a", "R3", "Nodule/Mass", (600, 100, 650, 150)),
    # B: chaining quirk, pairs in order: (0,3) overlap -> group 1, (1,2) -> group 2, then (2,3)
    # moves box 3 into box 2's group; kept rows: 0 and 1 (a union-find would keep only row 0).
    # Box 1 has a half-even case on y (145/1000 -> 14.5 -> 14).
    ("img_b", "R4", "Nodule/Mass", (100, 100, 200, 200)),
    ("img_b", "R5", "Nodule/Mass", (145, 145, 245, 245)),
    ("img_b", "R6", "Nodule/Mass", (130, 130, 230, 230)),
    ("img_b", "R4", "Nodule/Mass", (115, 115, 215, 215)),
    ("img_b", "R5", "Pleural effusion", (500, 700, 780, 950)),
    ("img_b", "R6", "Aortic enlargement", (380, 250, 460, 330)),
    ("img_b", "R4", "Aortic enlargement", (384, 252, 462, 334)),
    # C: no global label at all; two tiny boxes that round to the same string (a set keeps one)
    ("img_c", "R1", "Calcification", (100, 100, 102, 102)),
    ("img_c", "R2", "Calcification", (103, 103, 104, 104)),
    ("img_c", "R3", "Lung Opacity", (10, 20, 300, 400)),
    # D: every reader normal
    ("img_d", "R7", "No finding", None),
    ("img_d", "R8", "No finding", None),
    ("img_d", "R9", "No finding", None),
    # E: the first row of a group is not the first reader's
    ("img_e", "R9", "Consolidation", (200, 200, 400, 400)),
    ("img_e", "R2", "Consolidation", (205, 198, 402, 404)),
    ("img_e", "R9", "Edema", (0, 0, 999, 999)),
]
# (image, reader, set of positive labels)
TRAIN_LABELS = [
    ("img_a", "R1", {"No finding"}),
    ("img_a", "R2", {"Cardiomegaly", "Pneumonia"}),
    ("img_a", "R3", {"Cardiomegaly", "Nodule/Mass", "Lung tumor"}),
    ("img_b", "R4", {"Nodule/Mass", "Aortic enlargement", "COPD", "Lung tumor"}),
    ("img_b", "R5", {"Nodule/Mass", "Pleural effusion", "Other diseases"}),
    ("img_b", "R6", {"Nodule/Mass", "Aortic enlargement", "Tuberculosis"}),
    ("img_c", "R1", {"Calcification"}),
    ("img_c", "R2", {"Calcification"}),
    ("img_c", "R3", {"Lung Opacity"}),
    ("img_d", "R7", {"No finding"}),
    ("img_d", "R8", {"No finding"}),
    ("img_d", "R9", {"No finding"}),
    ("img_e", "R9", {"Consolidation", "Edema", "Pneumonia"}),
    ("img_e", "R2", {"Consolidation", "Pneumonia", "COPD"}),
]
TEST_BOXES = [
    ("img_t1", None, "Pneumothorax", (700.5, 100.25, 900, 500)),
    ("img_t1", None, "Rib fracture", (50, 60, 70, 80)),
    ("img_t2", None, "No finding", None),
]
TEST_LABELS = [
    ("img_t1", None, {"Pneumothorax", "Rib fracture", "Other diseases"}),
    ("img_t2", None, {"No finding"}),
]


def write_csvs(split, boxes, labels):
    ann = os.path.join(OUT, "annotations")
    os.makedirs(ann, exist_ok=True)
    readers = split == "train"
    with open(os.path.join(ann, f"annotations_{split}.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_id"] + (["rad_id"] if readers else []) + ["class_name", "x_min", "y_min", "x_max", "y_max"])
        for image, reader, name, box in boxes:
            coords = [""] * 4 if box is None else [repr(float(v)) for v in box]
            w.writerow([image] + ([reader] if readers else []) + [name] + coords)
    names = LOCAL + [n if (readers or n != "Other diseases") else "Other disease" for n in GLOBAL_FILE_ORDER]
    with open(os.path.join(ann, f"image_labels_{split}.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_id"] + (["rad_id"] if readers else []) + names)
        for image, reader, positive in labels:
            w.writerow([image] + ([reader] if readers else []) + [int(n in positive) for n in LOCAL + GLOBAL_FILE_ORDER])


# ---- the reference, transcribed ---------------------------------------------------------------

def compute_iou(bbox1, bbox2):
    x1, y1, x2, y2 = bbox1
    x3, y3, x4, y4 = bbox2
    iw = max(0, min(x2, x4) - max(x1, x3) + 1)
    ih = max(0, min(y2, y4) - max(y1, y3) + 1)
    inter = iw * ih
    union = (x2 - x1 + 1) * (y2 - y1 + 1) + (x4 - x3 + 1) * (y4 - y3 + 1) - inter
    return inter / union


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def groupby_bboxes_overlap(rows):
    for r in rows:
        r["overlap_group"] = -1
    groups = defaultdict(list)  # pandas groupby keeps row order inside a group
    for i, r in enumerate(rows):
        groups[(r["image_id"], r["class_name"])].append(i)
    for name in sorted(groups):
        if name[1] == "No finding":
            continue
        idx = groups[name]
        bboxes = [[float(rows[i][k]) for k in ("x_min", "y_min", "x_max", "y_max")] for i in idx]
        assign = [0] * len(bboxes)
        next_group_id = 1
        for a, b in itertools.combinations(range(len(bboxes)), 2):
            if compute_iou(bboxes[a], bboxes[b]) > 0.5:
                if assign[a] == 0 and assign[b] == 0:
                    assign[a] = assign[b] = next_group_id
                    next_group_id += 1
                elif assign[a] != 0:
                    assign[b] = assign[a]
                else:
                    assign[a] = assign[b]
        next_group_id = max(assign) + 1
        for k in range(len(assign)):
            if assign[k] == 0:
                assign[k] = next_group_id
                next_group_id += 1
        for k, i in enumerate(idx):
            rows[i]["overlap_group"] = assign[k]
    return rows


def preprocess_local_labels(path, sizes):
    rows = groupby_bboxes_overlap(read_rows(path))
    seen, kept = set(), []
    for r in rows:  # drop_duplicates(subset=[image_id, class_name, overlap_group]), keep first
        key = (r["image_id"], r["class_name"], r["overlap_group"])
        if key not in seen:
            seen.add(key)
            kept.append(r)
    labels = defaultdict(list)
    for r in kept:
        w, h = sizes[r["image_id"]]
        if r["class_name"] == "No finding":
            labels[r["image_id"]].append("No finding")
            continue
        c = [float(r["x_min"]) / w * 100, float(r["y_min"]) / h * 100,
             float(r["x_max"]) / w * 100, float(r["y_max"]) / h * 100]
        c = [int(v) for v in np.round(np.array(c))]
        labels[r["image_id"]].append(f"<p>{r['class_name']}</p> {{<{c[0]}><{c[1]}><{c[2]}><{c[3]}>}}")
    return {image_id: sorted(set(items)) for image_id, items in labels.items()}


def preprocess_global_labels(path):
    names = ["Lung tumor", "Pneumonia", "Tuberculosis", "Other diseases", "COPD", "No finding"]
    results = defaultdict(set)
    for row in read_rows(path):
        if "Other disease" in row:
            row["Other diseases"] = row.pop("Other disease")
        results[row["image_id"]].update(i for i, n in enumerate(names) if int(row[n]))
    return {image_id: "Global diseases of this chest radiograph are {}.".format(", ".join(names[i] for i in idx))
            for image_id, idx in results.items()}


def expected(split):
    ann = os.path.join(OUT, "annotations")
    local = preprocess_local_labels(os.path.join(ann, f"annotations_{split}.csv"), SIZES)
    out = []
    for image_id, global_label in preprocess_global_labels(os.path.join(ann, f"image_labels_{split}.csv")).items():
        entry = {"image_id": image_id, "global": global_label, "local_items": local.get(image_id, []),
                 "grounded_is_global": "No finding" in global_label}
        out.append(entry)
    return out


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    write_csvs("train", TRAIN_BOXES, TRAIN_LABELS)
    write_csvs("test", TEST_BOXES, TEST_LABELS)
    with open(os.path.join(OUT, "sizes.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_id", "width", "height"])
        for k, (wd, ht) in SIZES.items():
            w.writerow([k, wd, ht])
    result = {"train": expected("train"), "test": expected("test"), "grounding_prompts": INSTRUCTION_POOL,
              "vqa_prompt": VQA_PROMPT,
              "instruction_example": "<Img><ImageHere></Img> {} ".format(INSTRUCTION_POOL[0])}
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
    print(json.dumps(result["train"], indent=1))


if __name__ == "__main__":
    main()
