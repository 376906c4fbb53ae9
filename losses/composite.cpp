// A weighted sum of losses, for multi-task models: each term is a loss built by name, its parts
// logged under the term's label.
//
//   loss:
//     name: weighted_sum
//     terms:
//       - {label: au, weight: 1.0, loss: {name: weighted_bce, weights: auto}}
//       - {label: dice, weight: 1.0, loss: {name: au_dice, weights: auto}}
#include "losses/loss.h"

namespace facet::losses {
namespace {

class WeightedSum : public Loss {
 public:
  explicit WeightedSum(const Config& c) {
    const Config terms = c.at("terms");
    if (!terms.is_list() || terms.size() == 0) fail("{}: {}.terms: expected a non-empty list", c.where("terms"), c.prefix());
    for (size_t i = 0; i < terms.size(); ++i) {
      const Config t = terms.at(i);
      const Config inner = t.at("loss");
      terms_.push_back({t.get<std::string>("label", inner.get<std::string>("name")), t.get<double>("weight", 1.0),
                        loss_registry().create(inner)});
    }
  }

  void prepare(const data::Dataset& train) override {
    for (auto& t : terms_) t.loss->prepare(train);
  }

  LossResult operator()(const Outputs& outputs, const data::Batch& batch) override {
    LossResult r;
    bool per_sample = true;
    for (auto& t : terms_) {
      LossResult part = (*t.loss)(outputs, batch);
      const torch::Tensor weighted = part.total * t.weight;
      r.total = r.total.defined() ? r.total + weighted : weighted;
      for (const auto& [name, value] : part.parts) r.parts[t.label + "/" + name] = value;
      if (part.per_sample.defined() && per_sample)
        r.per_sample = r.per_sample.defined() ? r.per_sample + part.per_sample * t.weight : part.per_sample * t.weight;
      else
        per_sample = false;
    }
    if (!per_sample) r.per_sample = torch::Tensor();
    return r;
  }

 private:
  struct Term {
    std::string label;
    double weight;
    std::shared_ptr<Loss> loss;
  };
  std::vector<Term> terms_;
};

FACET_REGISTER(loss_registry(), "weighted_sum", "Weighted sum of losses (multi-task); parts logged per term",
               [](const Config& c) { return std::make_shared<WeightedSum>(c); });

}  // namespace
}  // namespace facet::losses
