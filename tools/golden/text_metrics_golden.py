"""Goldens for the generated-text metrics (metrics/text_metrics.*), from the reference libraries and
transcriptions of the reference evaluation code:
  BLEU      sacrebleu.corpus_bleu (defaults: 13a, exp smoothing) and its 13a tokenizer
  ROUGE-L   rouge_score.rouge_scorer.RougeScorer(["rougeL"]) (no stemmer)
  LiteGPT   compute_metrics.py's extract_labels / compute_accuracy (transcribed) with sklearn's
            classification_report (LiteGPT @1828e4c, medlvlm/modules/compute_metrics.py)
  REGE      eval_FABA.py's AU2Labels / AUint2Labels / get_acc_F1 over sklearn's confusion_matrix and
            description2emotion (transcribed; EmoLA emollava/eval/eval_FABA.py)

Writes tests/fixtures/text_metrics/expected.json.
"""
import json
import os
import re
from collections import defaultdict

import numpy as np
import sacrebleu
from rouge_score import rouge_scorer
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
from sklearn.metrics import classification_report, confusion_matrix

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "tests", "fixtures", "text_metrics")

HYPS = [
    "The cat sat on the mat.",
    "Global diseases of this chest radiograph are Pneumonia, COPD.",
    "AU1, AU2 and AU4 are active: brows raised & lowered (3.5-4 mm), e.g. \"tense\".",
    "It costs $1,000.50 -- or 1-2 euros; see http://x.org/a?b=c.",
    "",
    "naïve café test's O'Neill, 1990s-era well-known.",
    "&quot;quoted&quot; &amp; &lt;tag&gt; here.",
    "a b c d e f",
]
REFS = [
    "The cat is on the mat.",
    "Global diseases of this chest radiograph are Pneumonia, Tuberculosis, COPD.",
    "AU1, AU2 and AU4 are active: the brows are raised and lowered.",
    "It costs $1,000.50 or 1-2 euros.",
    "Nothing to see here.",
    "naive cafe test's O'Neill, 1990s-era well known.",
    "\"quoted\" & <tag> here.",
    "a b c d e f g",
]

LITEGPT_CLASSES = ["Aortic enlargement", "Atelectasis", "Calcification", "Cardiomegaly", "Clavicle fracture",
                   "Consolidation", "Edema", "Emphysema", "Enlarged PA", "ILD", "Infiltration", "Lung Opacity",
                   "Lung cavity", "Lung cyst", "Mediastinal shift", "Nodule/Mass", "Pleural effusion",
                   "Pleural thickening", "Pneumothorax", "Pulmonary fibrosis", "Rib fracture", "Other lesion", "COPD",
                   "Lung tumor", "Pneumonia", "Tuberculosis", "Other disease", "No finding", "Finding"]

LITEGPT_PAIRS = [  # (prediction, ground truth)
    ("Global diseases of this chest radiograph are Pneumonia, Other diseases. Local diseases of this chest radiograph "
     "are <p>Consolidation</p> {<20><20><40><40>},<p>Cardiomegaly</p> {<30><50><70><75>}.",
     "Global diseases of this chest radiograph are Pneumonia. Local diseases of this chest radiograph are "
     "<p>Consolidation</p> {<21><19><41><40>},<p>Cardiomegaly</p> {<30><50><70><76>},<p>Cardiomegaly</p> {<0><0><5><5>}."),
    ("Global diseases of this chest radiograph are No finding.",
     "Global diseases of this chest radiograph are No finding."),
    ("Global diseases of this chest radiograph are Lung tumor. Local diseases of this chest radiograph are "
     "<p>Nodule/Mass</p> {<12><10><25><20>},<p>nodule/mass</p> {<60><12><65><19>},<p>Lung Opacity</p> {<1><2><3>}.",
     "Global diseases of this chest radiograph are Lung tumor, COPD. Local diseases of this chest radiograph are "
     "<p>Nodule/Mass</p> {<60><12><65><19>},<p>Emphysema</p> {<10><10><90><90>}."),
    ("global diseases: tuberculosis <p>Pleural effusion</p> {<62><70><98><95>} and <b>edema</b>",
     "Global diseases of this chest radiograph are Tuberculosis, Other diseases. Local diseases of this chest "
     "radiograph are <p>Pleural effusion</p> {<60><70><98><96>},<p>Pleural thickening</p> {<2><3><4><5>}."),
]

AU_CASES = [  # (generated description, label string)
    ("The face shows AU1 (inner brow raiser), AU2 and AU12; AU25 lips part.", "1, 2, 12, 25"),
    ("Only AU6 and AU12: a Duchenne smile. AU01 is written with a zero.", "6, 12"),
    ("AU4 brow lowerer, AU7 lid tightener, AU17.", "4, 7, 17, 24"),
    ("No action units are clearly visible.", "4"),
    ("AU43 eyes closed, AU26 jaw drop.", "43, 26, 25"),  # AU5 nowhere: skipped
    ("AU10 and AU12 and AU25", "10, 12, 25"),
]
EMOTION_CASES = [  # (description, label)
    ("The person looks happy. The eyes are bright.", "Happiness"),
    ("The person is not happy. The brows are lowered in anger and frustration.", "3"),
    ("She appears calm and thoughtful. There is some concern and worry in the eyes.", "Neutral"),
    ("The expression is hard to read. There is shock, panic and worry, with some curiosity.", "Fear"),
    ("The face shows disgust! The nose is wrinkled.", "Disgust"),
    ("He is crying.", "1"),
    ("Mr. Smith looks startled. No sadness here.", "Surprise"),
    ("There is no clear emotion. Nothing is visible.", "Neutral"),
    ("The subject shows discomfort. Also displeased, with displeasure and contempt.", "Disgust"),
    ("A mild expression. E.g. the mouth is relaxed.", "4"),
    ("Expression with curiosity. The eyes widen.", "Surprise"),
    ("A face with tension and focus and alarm. Calm.", "6"),
]

# ---- EmoLA eval_FABA.py, transcribed -----------------------------------------------------------
EMOTION_LIST = {
    "happiness": ["happiness", "happy", "smiling", "smile", "pleasant", "content", "contentment", "relaxed", "relaxation", "cheerful", "joy", "amusement", "amused", "positivity", "positive", "lightheartedness", "joyful", "friendly", "warmth", "bright"],
    "neutral": ["neutral", "neutrality", "calm", "contemplative", "concerned", "thoughtful", "focused", "solemn", "mild"],
    "surprise": ["surprise", "surprised", "startled", "puzzled", "astonishment", "disbelief", "wonder", "curiosity", "curious", "confusion", "wonder", "bewilderment", "skepticism", "excitement", "uncertainty"],
    "fear": ["fear", "shock", "anxiety", "apprehension", "tension", "panic", "alertness", "focus", "worry", "alarm", "curiosity", "contemplation"],
    "disgust": ["disgust", "distaste", "disgusted", "discomfort", "displeasure", "displeased", "disapproval", "disdain", "contempt"],
    "anger": ["anger", "mad", "irate", "outraged", "agitation", "irritated", "enraged", "annoyed", "incensed", "serious", "frustration", "displeased", "stern"],
    "sadness": ["sadness", "crying", "distress", "concern", "discomfort", "anguish", "somber"],
}
EMOTIONS2NUM = {"Happiness": 0, "Sadness": 1, "Surprise": 2, "Anger": 3, "Neutral": 4, "Disgust": 5, "Fear": 6}


def remove_neg_sentences(text):
    negative_words = ['not', 'no', "isn't ", 'nothing', 'cannot', "won't", "shouldn't", "neither", "nor"]
    sentences = re.split(r'(?<!\w\.\w.)(?<![A-Z][a-z]\.)(?<=\.|\?)\s', text)
    return " ".join(s for s in sentences if not any(w in s.lower() for w in negative_words))


def description2emotion(description):
    emotions = ["happiness", "sadness", "surprise", "anger", "neutral", "disgust", "fear"]
    counts = {e: 0 for e in emotions}
    positive = remove_neg_sentences(description)
    if positive == '':
        positive = description
    first = re.match(r'^(.*?)[.!?]', positive).group(1)
    rest = re.sub(r'^(.*?)[.!?]', '', positive)
    for word in re.findall(r'\b\w+\b', first.lower()):
        for e in emotions:
            if word in EMOTION_LIST[e]:
                return emotions.index(e)
    for word in re.findall(r'\b\w+\b', rest.lower()):
        for e in emotions:
            if word in EMOTION_LIST[e]:
                counts[e] += 1
    return emotions.index(max(counts, key=lambda k: counts[k]))


FABA_AUS = [1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 16, 17, 20, 23, 24, 25, 26, 27, 43]
FABA_SELECT = ['1', '2', '4', '5', '6', '10', '12', '17', '24', '25', '26', '43']


def au2labels(text, au2idx):
    labels = [0] * len(au2idx)
    for num in re.findall(r"AU(\d+)", text):
        if num in au2idx:
            labels[au2idx[num]] = 1
    return labels


def auint2labels(text, au2idx):
    labels = [0] * len(au2idx)
    for au in text.split(', '):
        if au in au2idx:
            labels[au2idx[au]] = 1
    return labels


def get_f1(cm):
    tp, fp, fn = cm[1, 1], cm[0, 1], cm[1, 0]
    if tp == 0:
        return 0
    p, r = tp / (tp + fp), tp / (tp + fn)
    return 2 * p * r / (p + r)


# ---- LiteGPT compute_metrics.py, transcribed --------------------------------------------------

def extract_labels(text):
    labels = [0] * len(LITEGPT_CLASSES)
    text = re.sub(r"<.*?>", "", text.lower())
    for i, label in enumerate(LITEGPT_CLASSES[:-1]):
        if label.lower() in text:
            labels[i] = 1
    if not labels[-2]:
        labels[-1] = 1
    return labels


def compute_iou(b1, b2):
    iw = max(0, min(b1[2], b2[2]) - max(b1[0], b2[0]) + 1)
    ih = max(0, min(b1[3], b2[3]) - max(b1[1], b2[1]) + 1)
    inter = iw * ih
    return inter / ((b1[2] - b1[0] + 1) * (b1[3] - b1[1] + 1) + (b2[2] - b2[0] + 1) * (b2[3] - b2[1] + 1) - inter)


def box_accuracy(pairs, threshold=0.5):
    pattern = r'<p>([^<]+)</p> \{<(\d+)><(\d+)><(\d+)><(\d+)>\}'
    total, count = 0, 0
    for k, (pred, gt) in enumerate(pairs):
        gt_d, pred_d = defaultdict(list), defaultdict(list)
        for name, *b in re.findall(pattern, gt):
            gt_d[name].append([int(v) for v in b])
            total += 1
        for name, *b in re.findall(pattern, pred):
            pred_d[name].append([int(v) for v in b])
        for name, boxes in gt_d.items():
            if name not in pred_d:
                continue
            for g in boxes:
                for p in pred_d[name]:
                    if compute_iou(p, g) > threshold:
                        count += 1
                        break
    return count / total * 100, total


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    tok = Tokenizer13a()
    bleu = sacrebleu.corpus_bleu(HYPS, [REFS])
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    rouge = [scorer.score(r, h)["rougeL"] for h, r in zip(HYPS, REFS)]

    truth = np.array([extract_labels(gt) for _, gt in LITEGPT_PAIRS])
    pred = np.array([extract_labels(p) for p, _ in LITEGPT_PAIRS])
    report = classification_report(truth, pred, target_names=LITEGPT_CLASSES, output_dict=True, zero_division=0)
    hit_rate, boxes = box_accuracy(LITEGPT_PAIRS)

    au2idx = {str(a): i for i, a in enumerate(FABA_AUS)}
    au_pred = np.array([au2labels(t, au2idx) for t, _ in AU_CASES])
    au_true = np.array([auint2labels(l, au2idx) for _, l in AU_CASES])
    f1s = {}
    for au in FABA_SELECT:
        try:
            f1s[au] = float(get_f1(confusion_matrix(au_true[:, au2idx[au]], au_pred[:, au2idx[au]]))) * 100
        except IndexError:
            f1s[au] = None  # the reference's except: the AU is left out
    au_mean = float(np.mean([v for v in f1s.values() if v is not None]))
    au_rouge = [scorer.score(l, t)["rougeL"].fmeasure for t, l in AU_CASES]

    emotion_pred = [description2emotion(d) for d, _ in EMOTION_CASES]
    emotion_true = [int(l) if l.isdigit() else EMOTIONS2NUM[l] for _, l in EMOTION_CASES]

    result = {
        "bleu": {"hyps": HYPS, "refs": REFS, "score": bleu.score, "bp": bleu.bp, "precisions": bleu.precisions,
                 "sys_len": bleu.sys_len, "ref_len": bleu.ref_len,
                 "tokens": [tok(h.rstrip()).split() for h in HYPS + REFS]},
        "bleu_single": [sacrebleu.corpus_bleu([h], [[r]]).score for h, r in zip(HYPS, REFS)],
        "rouge_l": [{"precision": s.precision, "recall": s.recall, "fmeasure": s.fmeasure} for s in rouge],
        "litegpt": {"pairs": LITEGPT_PAIRS, "truth": truth.tolist(), "pred": pred.tolist(),
                    "report": {k: v for k, v in report.items()}, "box_hit_rate": hit_rate, "box_count": boxes},
        "rege_au": {"cases": AU_CASES, "f1": f1s, "mean": au_mean, "rouge_mean": float(np.mean(au_rouge)) * 100},
        "rege_emotion": {"cases": EMOTION_CASES, "pred": emotion_pred, "truth": emotion_true,
                         "accuracy": 100 * float(np.mean(np.array(emotion_pred) == np.array(emotion_true)))},
    }
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(result, f, indent=1, ensure_ascii=False)
    print(json.dumps({k: result[k] for k in ("bleu_single", "rege_emotion")}, indent=1)[:3000])
    print(bleu.score, f1s, au_mean, hit_rate)


if __name__ == "__main__":
    main()
