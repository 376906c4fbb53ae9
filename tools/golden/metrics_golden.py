"""Golden metric values from scikit-learn (and, for the CCC, which scikit-learn does not define, the
population formula written with numpy), for Facet's `classification`, `multilabel_f1`, `mae` and `ccc`
metrics (tests/metrics/test_metrics_sklearn.cpp).

Random but seeded inputs with the cases that trip metrics up: unknown labels (negative class labels,
a multi-label mask, a regression mask), a class never predicted and a class never present, a label
column with no positive at all. Unknown entries are left out before scikit-learn sees them, as
Facet's metrics leave them out.

Writes tests/fixtures/metrics/sklearn_golden.safetensors: the inputs and, as float64 tensors, the
expected values. Run: $FACET_VENV/bin/python tools/golden/metrics_golden.py
"""
import os

import numpy as np
import sklearn
import torch
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error

from golden_io import save

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "metrics", "sklearn_golden.safetensors")
rng = np.random.default_rng(7)

# Classification: 7 classes, class 5 never predicted (its logit pushed down), class 6 never present,
# 10 % unknown labels (-1).
n, c = 211, 7
cls_logits = rng.normal(size=(n, c)).astype(np.float32)
cls_logits[:, 5] -= 100
cls_label = rng.integers(0, 6, size=n)
cls_label[rng.random(n) < 0.1] = -1
known = cls_label >= 0
pred = cls_logits.argmax(1)
cls_accuracy = accuracy_score(cls_label[known], pred[known])
cls_macro_f1 = f1_score(cls_label[known], pred[known], labels=list(range(c)), average="macro", zero_division=0)

# Multi-label: 12 labels at threshold 0.5 on sigmoid, 15 % unknown entries, label 11 never positive.
m, l = 303, 12
ml_logits = rng.normal(size=(m, l)).astype(np.float32)
ml_labels = (rng.random((m, l)) < 0.3).astype(np.float32)
ml_labels[:, 11] = 0
ml_mask = (rng.random((m, l)) >= 0.15).astype(np.float32)
ml_pred = (1 / (1 + np.exp(-ml_logits.astype(np.float64)))) >= 0.5
ml_f1 = np.array([f1_score(ml_labels[ml_mask[:, j] > 0, j], ml_pred[ml_mask[:, j] > 0, j], zero_division=0)
                  for j in range(l)])
ml_acc = np.array([accuracy_score(ml_labels[ml_mask[:, j] > 0, j], ml_pred[ml_mask[:, j] > 0, j]) for j in range(l)])

# Regression: 2 columns (valence, arousal), 20 % unknown per column.
r = 157
reg_target = rng.uniform(-1, 1, size=(r, 2)).astype(np.float32)
reg_pred = (0.6 * reg_target + rng.normal(scale=0.3, size=(r, 2)) + 0.1).astype(np.float32)
reg_mask = (rng.random((r, 2)) >= 0.2).astype(np.float32)
# In float64, as Facet accumulates (scikit-learn keeps float32 inputs in float32).
mae = np.array([mean_absolute_error(reg_target[reg_mask[:, j] > 0, j].astype(np.float64),
                                   reg_pred[reg_mask[:, j] > 0, j].astype(np.float64)) for j in range(2)])


def ccc(x, y):
    x, y = x.astype(np.float64), y.astype(np.float64)
    sxy = ((x - x.mean()) * (y - y.mean())).mean()
    return 2 * sxy / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


ccc_values = np.array([ccc(reg_pred[reg_mask[:, j] > 0, j], reg_target[reg_mask[:, j] > 0, j]) for j in range(2)])

d = lambda v: torch.tensor(np.asarray(v, dtype=np.float64))
save({
    "cls_logits": torch.from_numpy(cls_logits), "cls_label": torch.from_numpy(cls_label.astype(np.int64)),
    "cls_accuracy": d([cls_accuracy]), "cls_macro_f1": d([cls_macro_f1]),
    "ml_logits": torch.from_numpy(ml_logits), "ml_labels": torch.from_numpy(ml_labels), "ml_mask": torch.from_numpy(ml_mask),
    "ml_f1": d(ml_f1), "ml_accuracy": d(ml_acc),
    "reg_pred": torch.from_numpy(reg_pred), "reg_target": torch.from_numpy(reg_target), "reg_mask": torch.from_numpy(reg_mask),
    "reg_mae": d(mae), "reg_ccc": d(ccc_values),
}, OUT, {"generator": "tools/golden/metrics_golden.py", "sklearn": sklearn.__version__, "numpy": np.__version__})
print(f"wrote {OUT}: accuracy {cls_accuracy:.4f}, macro-F1 {cls_macro_f1:.4f}, multilabel F1 mean {ml_f1.mean():.4f}, "
      f"MAE {mae}, CCC {ccc_values}")
