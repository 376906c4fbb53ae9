// Multi-label losses for AU detection and findings: weighted binary cross-entropy with unknown
// labels masked (BP4D's 9, ABAW's -1), and JAA-Net's weighted Dice (face.md §C.4). Per-label
// weights are given, or `auto`: JAA-Net's inverse occurrence rates of the training split,
// normalised to sum to the number of labels (face.md §A.7).
//
//   loss: {name: weighted_bce, logits: logits, target: labels, mask: label_mask,
//          weights: auto | [..] | none, pos_weight: auto | [..] | none, normalize: labels | batch}
//   loss: {name: au_dice, weights: auto, smooth: 1, divide_by_batch: false}
#include "data/face/au.h"
#include "losses/loss.h"

namespace facet::losses {
namespace {

// The batch's target and mask, as float.
std::pair<torch::Tensor, torch::Tensor> target_and_mask(const data::Batch& batch, const std::string& target,
                                                        const data::MaskField& mask) {
  if (!batch.fields.contains(target)) fail("loss: the batch has no field \"{}\"", target);
  const torch::Tensor t = batch.fields.at(target).to(torch::kFloat);
  return {t, mask.of(batch, t)};
}

// A per-label vector option: a list, `auto` (computed in prepare) or `none`.
struct LabelVector {
  std::string mode = "none";  // none | auto | list
  torch::Tensor values;
  std::string key, where;

  static LabelVector from(const Config& c, const std::string& key) {
    LabelVector v;
    v.key = c.full_key(key);
    v.where = c.where(key);
    if (!c.has(key)) return v;
    if (c.at(key).is_list()) {
      v.mode = "list";
      v.values = torch::tensor(c.get<std::vector<double>>(key), torch::kFloat);
      if ((v.values <= 0).any().item<bool>()) fail("{}: {}: every entry must be positive", v.where, v.key);
      return v;
    }
    v.mode = c.get<std::string>(key);
    if (v.mode != "auto" && v.mode != "none") fail("{}: {}: expected a list, auto or none, got \"{}\"", v.where, v.key, v.mode);
    return v;
  }
  // `auto` from the training split's AU labels.
  void prepare(const data::Dataset& train, bool pos_weight) {
    if (mode != "auto") return;
    const auto* source = dynamic_cast<const data::face::AuLabelSource*>(&train);
    if (!source) fail("{}: {}: auto needs a dataset with AU labels (bp4d, disfa, abaw); give a list", where, key);
    values = pos_weight ? data::face::au_pos_weights(source->all_labels(), source->all_label_masks(), source->au_label_names())
                        : source->class_weights();
  }
  torch::Tensor get(int64_t labels, const torch::Device& device) const {
    if (!values.defined()) return {};
    if (values.numel() != labels) fail("{}: {}: {} values for {} labels", where, key, values.numel(), labels);
    return values.to(device);
  }
};

class WeightedBce : public Loss {
 public:
  explicit WeightedBce(const Config& c)
      : logits_(c.get<std::string>("logits", "logits")),
        target_(c.get<std::string>("target", "labels")),
        mask_(c, "mask", "label_mask"),
        weights_(LabelVector::from(c, "weights")),
        pos_weight_(LabelVector::from(c, "pos_weight")),
        normalize_(c.get<std::string>("normalize", "labels")) {
    if (normalize_ != "labels" && normalize_ != "batch")
      fail("{}: {}: expected labels or batch, got \"{}\"", c.where("normalize"), c.full_key("normalize"), normalize_);
  }

  void prepare(const data::Dataset& train) override {
    weights_.prepare(train, false);
    pos_weight_.prepare(train, true);
  }

  LossResult operator()(const Outputs& outputs, const data::Batch& batch) override {
    const torch::Tensor logits = outputs.at(logits_).to(torch::kFloat);
    const auto [target, mask] = target_and_mask(batch, target_, mask_);
    const int64_t labels = logits.size(1);
    auto options = torch::nn::functional::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kNone);
    if (auto pw = pos_weight_.get(labels, logits.device()); pw.defined()) options.pos_weight(pw);
    torch::Tensor l = torch::nn::functional::binary_cross_entropy_with_logits(logits, target * mask, options) * mask;
    if (auto w = weights_.get(labels, logits.device()); w.defined()) l = l * w;
    LossResult r;
    if (normalize_ == "batch") {
      // EMMA: the sum over known labels divided by the batch size (face.md §4.2).
      r.total = l.sum() / static_cast<double>(logits.size(0));
    } else {
      // JAA-Net: each label's mean over its known samples, averaged over labels.
      r.total = (l.sum(0) / mask.sum(0).clamp_min(1)).mean();
    }
    r.parts["bce"] = r.total.detach();
    r.per_sample = (l.sum(1) / mask.sum(1).clamp_min(1)).detach();
    return r;
  }

 private:
  std::string logits_, target_;
  data::MaskField mask_;
  LabelVector weights_, pos_weight_;
  std::string normalize_;
};

// JAA-Net's Dice loss per label over the batch, 1 - (2 sum(p t) + s) / (sum(p^2) + sum(t^2) + s) with
// p = sigmoid(logit) and unknown labels left out, weighted and averaged over labels. JAA-Net's
// released code also divides the ratio by the batch size (face.md §C.4): `divide_by_batch: true`.
class AuDice : public Loss {
 public:
  explicit AuDice(const Config& c)
      : logits_(c.get<std::string>("logits", "logits")),
        target_(c.get<std::string>("target", "labels")),
        mask_(c, "mask", "label_mask"),
        weights_(LabelVector::from(c, "weights")),
        smooth_(c.get<double>("smooth", 1.0)),
        divide_by_batch_(c.get<bool>("divide_by_batch", false)) {}

  void prepare(const data::Dataset& train) override { weights_.prepare(train, false); }

  LossResult operator()(const Outputs& outputs, const data::Batch& batch) override {
    const torch::Tensor logits = outputs.at(logits_).to(torch::kFloat);
    const auto [target, mask] = target_and_mask(batch, target_, mask_);
    const torch::Tensor p = torch::sigmoid(logits) * mask, t = target * mask;
    torch::Tensor ratio = (2 * (p * t).sum(0) + smooth_) / ((p * p).sum(0) + (t * t).sum(0) + smooth_);
    if (divide_by_batch_) ratio = ratio / static_cast<double>(logits.size(0));
    torch::Tensor dice = 1 - ratio;  // [L]
    if (auto w = weights_.get(logits.size(1), logits.device()); w.defined()) dice = dice * w;
    LossResult r;
    r.total = dice.mean();
    r.parts["dice"] = r.total.detach();
    return r;
  }

 private:
  std::string logits_, target_;
  data::MaskField mask_;
  LabelVector weights_;
  double smooth_;
  bool divide_by_batch_;
};

FACET_REGISTER(loss_registry(), "weighted_bce",
               "Multi-label BCE with unknown labels masked, per-label weights / pos_weight (lists or auto)",
               [](const Config& c) { return std::make_shared<WeightedBce>(c); });
FACET_REGISTER(loss_registry(), "au_dice", "JAA-Net weighted Dice loss per label (unknown labels masked)",
               [](const Config& c) { return std::make_shared<AuDice>(c); });

}  // namespace
}  // namespace facet::losses
