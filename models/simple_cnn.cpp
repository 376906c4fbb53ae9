// "simple_cnn": a small convolutional classifier (conv-BN-ReLU blocks, global average pooling,
// linear head). Not a paper model: it is the trainer's smoke-test and demo model.
#include "models/model.h"

namespace facet::models {
namespace {

struct SimpleCnnOptions {
  int64_t in_channels = 1;
  int64_t num_classes = 4;
  std::vector<int64_t> widths = {16, 32, 64};
  double dropout = 0.0;
  bool batch_norm = true;  // off: per-rank batch statistics cannot differ (distributed equivalence tests)
  std::string input = "image";

  static SimpleCnnOptions from(const Config& c) {
    SimpleCnnOptions o;
    o.in_channels = c.get<int64_t>("in_channels", o.in_channels);
    o.num_classes = c.get<int64_t>("num_classes", o.num_classes);
    o.widths = c.get<std::vector<int64_t>>("widths", o.widths);
    o.dropout = c.get<double>("dropout", o.dropout);
    o.input = c.get<std::string>("input", o.input);
    o.batch_norm = c.get<bool>("batch_norm", o.batch_norm);
    if (o.widths.empty()) fail("{}: {}.widths: expected at least one width", c.where("widths"), c.prefix());
    return o;
  }
};

class SimpleCnn : public Model {
 public:
  explicit SimpleCnn(SimpleCnnOptions o) : options_(std::move(o)) {
    int64_t in = options_.in_channels;
    for (int64_t width : options_.widths) {
      features_->push_back(
          torch::nn::Conv2d(torch::nn::Conv2dOptions(in, width, 3).padding(1).bias(!options_.batch_norm)));
      if (options_.batch_norm) features_->push_back(torch::nn::BatchNorm2d(width));
      features_->push_back(torch::nn::ReLU(true));
      features_->push_back(torch::nn::MaxPool2d(2));
      in = width;
    }
    register_module("features", features_);
    dropout_ = register_module("dropout", torch::nn::Dropout(options_.dropout));
    head_ = register_module("head", torch::nn::Linear(in, options_.num_classes));
  }

  Outputs forward(const data::Batch& batch) override {
    auto x = features_->forward(batch.fields.at(options_.input));
    x = dropout_->forward(x.mean({2, 3}));
    return {{"logits", head_->forward(x)}};
  }
  std::string default_visualizer() const override { return "classification"; }

 private:
  SimpleCnnOptions options_;
  torch::nn::Sequential features_;
  torch::nn::Dropout dropout_{nullptr};
  torch::nn::Linear head_{nullptr};
};

FACET_REGISTER(model_registry(), "simple_cnn", "Small conv classifier (smoke tests, demo); not a paper model",
               [](const Config& c) { return std::make_shared<SimpleCnn>(SimpleCnnOptions::from(c)); });

}  // namespace
}  // namespace facet::models
