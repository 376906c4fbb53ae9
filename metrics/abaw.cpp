// The ABAW4 multi-task score (face.md §4.4): P_MTL = mean(CCC_valence, CCC_arousal) + macro-F1 of
// the 8 expressions + mean F1 of the 12 AUs — the mean of the two CCCs, not their sum, as EMMA's
// code and the challenge's published tables show. Its three parts are ordinary metrics (ccc,
// classification, multilabel_f1), configured under `va`, `expression` and `au`.
//
//   metrics:
//     - name: abaw_mtl
//       va: {pred: va, target: va, mask: va_mask}
//       expression: {logits: expression_logits, target: expression, num_classes: 8}
//       au: {logits: au_logits, target: labels, mask: label_mask, threshold: 0.5}
#include "metrics/metric.h"

namespace facet::metrics {
namespace {

class AbawMtl : public Metric {
 public:
  explicit AbawMtl(const Config& c) {
    // Each part: the user's node (or an empty one) with the ABAW output names as defaults.
    auto part = [&](const std::string& key, const std::string& name,
                    const std::vector<std::pair<std::string, std::string>>& defaults) {
      Config node = c.has(key) ? c.at(key) : Config::parse("{}", c.where());
      for (const auto& [k, v] : defaults)
        if (!node.has(k)) node.set(k, v, "abaw_mtl default");
      node.set("name", name, "abaw_mtl");
      return metric_registry().create(node);
    };
    va_ = part("va", "ccc", {});
    expression_ = part("expression", "classification",
                       {{"logits", "expression_logits"}, {"target", "expression"}, {"num_classes", "8"}});
    au_ = part("au", "multilabel_f1", {{"logits", "au_logits"}});
  }

  void prepare(const data::Dataset& eval) override {
    for (auto* m : parts()) m->prepare(eval);
  }
  void update(const Outputs& outputs, const data::Batch& batch) override {
    for (auto* m : parts()) m->update(outputs, batch);
  }

  std::map<std::string, double> compute() const override {
    std::map<std::string, double> out;
    for (const auto& [k, v] : va_->compute()) out["va/" + k] = v;
    for (const auto& [k, v] : expression_->compute()) out["expression/" + k] = v;
    for (const auto& [k, v] : au_->compute()) out["au/" + k] = v;
    out["mtl_score"] = out["va/ccc/mean"] + out["expression/macro_f1"] + out["au/f1/mean"];
    return out;
  }

  void reset() override {
    for (auto* m : parts()) m->reset();
  }
  torch::Tensor state() const override {
    std::vector<torch::Tensor> states;
    for (auto* m : parts()) states.push_back(m->state().to(torch::kDouble).flatten());
    return torch::cat(states);
  }
  void load_state(const torch::Tensor& summed) override {
    // VA and expression states have a fixed size; the AU counts take the rest, since an object that
    // has not counted yet (no batch, no `names`) does not know their size.
    const int64_t va = va_->state().numel(), expression = expression_->state().numel();
    if (summed.numel() < va + expression)
      fail("abaw_mtl: a merged state of {} values is shorter than its VA and expression parts ({})", summed.numel(),
           va + expression);
    va_->load_state(summed.slice(0, 0, va));
    expression_->load_state(summed.slice(0, va, va + expression));
    au_->load_state(summed.slice(0, va + expression));
  }

 private:
  std::vector<Metric*> parts() const { return {va_.get(), expression_.get(), au_.get()}; }
  std::shared_ptr<Metric> va_, expression_, au_;
};

FACET_REGISTER(metric_registry(), "abaw_mtl",
               "ABAW4 multi-task score: mean CCC(valence, arousal) + expression macro-F1 + AU mean F1",
               [](const Config& c) { return std::make_shared<AbawMtl>(c); });

}  // namespace
}  // namespace facet::metrics
