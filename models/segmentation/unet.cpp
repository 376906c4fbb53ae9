// The U-Net and model `unet` (models/segmentation/unet.h).
#include "models/segmentation/unet.h"

#include "core/text.h"
#include "models/model.h"

namespace facet::models::segmentation {

namespace F = torch::nn::functional;

namespace {

// A conv keeping the size (padding kernel / 2), with a bias.
torch::nn::Conv2d unet_conv(int64_t in, int64_t out, int64_t kernel) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel).padding(kernel / 2));
}

}  // namespace

UNetOptions UNetOptions::from(const Config& c) {
  UNetOptions o;
  o.in_channels = c.get_in_range<int64_t>("in_channels", o.in_channels, Range::at_least(1));
  o.classes = c.get_in_range<int64_t>("classes", o.classes, Range::at_least(2));
  o.width = c.get_in_range<int64_t>("width", o.width, Range::at_least(2));
  o.bilinear = c.get<bool>("bilinear", o.bilinear);
  if (o.bilinear && o.width % 2 != 0)
    fail("{}: {}: a bilinear U-Net halves its widest level; the width must be even, got {}", c.where("width"), c.full_key("width"),
         o.width);
  return o;
}

DoubleConvImpl::DoubleConvImpl(int64_t in, int64_t out, int64_t mid) {
  double_conv = register_module("double_conv", torch::nn::Sequential(unet_conv(in, mid, 3), torch::nn::BatchNorm2d(mid),
                                                                      torch::nn::ReLU(true), unet_conv(mid, out, 3),
                                                                      torch::nn::BatchNorm2d(out), torch::nn::ReLU(true)));
}

torch::Tensor DoubleConvImpl::forward(const torch::Tensor& x) { return double_conv->forward(x); }

UNetDownImpl::UNetDownImpl(int64_t in, int64_t out) {
  maxpool_conv = register_module("maxpool_conv", torch::nn::Sequential(torch::nn::MaxPool2d(2), DoubleConv(in, out, out)));
}

torch::Tensor UNetDownImpl::forward(const torch::Tensor& x) { return maxpool_conv->forward(x); }

UNetUpImpl::UNetUpImpl(int64_t in, int64_t out, bool bilinear) {
  if (bilinear) {
    conv = register_module("conv", DoubleConv(in, out, in / 2));
  } else {
    up = register_module("up", torch::nn::ConvTranspose2d(torch::nn::ConvTranspose2dOptions(in, in / 2, 2).stride(2)));
    conv = register_module("conv", DoubleConv(in, out, out));
  }
}

torch::Tensor UNetUpImpl::forward(const torch::Tensor& x, const torch::Tensor& skip) {
  torch::Tensor u = up ? up->forward(x)
                       : F::interpolate(x, F::InterpolateFuncOptions()
                                               .scale_factor(std::vector<double>{2.0, 2.0})
                                               .mode(torch::kBilinear)
                                               .align_corners(true));
  const int64_t dy = skip.size(2) - u.size(2), dx = skip.size(3) - u.size(3);
  if (dy != 0 || dx != 0) u = F::pad(u, F::PadFuncOptions({dx / 2, dx - dx / 2, dy / 2, dy - dy / 2}));
  return conv->forward(torch::cat({skip, u}, 1));
}

UNetImpl::UNetImpl(const UNetOptions& o) {
  const int64_t w = o.width, factor = o.bilinear ? 2 : 1;
  inc = register_module("inc", DoubleConv(o.in_channels, w, w));
  down1 = register_module("down1", UNetDown(w, w * 2));
  down2 = register_module("down2", UNetDown(w * 2, w * 4));
  down3 = register_module("down3", UNetDown(w * 4, w * 8));
  down4 = register_module("down4", UNetDown(w * 8, w * 16 / factor));
  up1 = register_module("up1", UNetUp(w * 16, w * 8 / factor, o.bilinear));
  up2 = register_module("up2", UNetUp(w * 8, w * 4 / factor, o.bilinear));
  up3 = register_module("up3", UNetUp(w * 4, w * 2 / factor, o.bilinear));
  up4 = register_module("up4", UNetUp(w * 2, w, o.bilinear));
  torch::OrderedDict<std::string, torch::nn::AnyModule> head;
  head.insert("conv", torch::nn::AnyModule(unet_conv(w, o.classes, 1)));
  outc = register_module("outc", torch::nn::Sequential(std::move(head)));
  // The reference's init: every conv Kaiming-uniform over fan_out for ReLU, biases 0.
  torch::NoGradGuard no_grad;
  for (auto& module : modules(/*include_self=*/false)) {
    torch::Tensor weight, bias;
    if (auto* c = module->as<torch::nn::Conv2d>()) weight = c->weight, bias = c->bias;
    else if (auto* t = module->as<torch::nn::ConvTranspose2d>()) weight = t->weight, bias = t->bias;
    else continue;
    torch::nn::init::kaiming_uniform_(weight, 0, torch::kFanOut, torch::kReLU);
    if (bias.defined()) bias.zero_();
  }
}

torch::Tensor UNetImpl::forward(const torch::Tensor& x) {
  if (x.dim() != 4) fail("u-net: expected [B, C, H, W], got {}", x.sizes());
  const torch::Tensor x1 = inc->forward(x), x2 = down1->forward(x1), x3 = down2->forward(x2), x4 = down3->forward(x3),
                      x5 = down4->forward(x4);
  torch::Tensor y = up1->forward(x5, x4);
  y = up2->forward(y, x3);
  y = up3->forward(y, x2);
  y = up4->forward(y, x1);
  return outc->forward(y);
}

namespace {

struct UNetModelOptions {
  UNetOptions unet;
  std::string image_field = "image";

  static UNetModelOptions from(const Config& c) {
    UNetModelOptions o;
    o.unet = UNetOptions::from(c);
    o.image_field = c.get<std::string>("image_field", o.image_field);
    return o;
  }
};

class UNetModel : public Model {
 public:
  explicit UNetModel(UNetModelOptions o) : options_(std::move(o)) { unet = register_module("unet", UNet(options_.unet)); }

  Outputs forward(const data::Batch& batch) override {
    if (!batch.fields.contains(options_.image_field))
      fail("unet: the batch has no field \"{}\" (model.image_field); its fields: {}", options_.image_field,
           join(batch.fields.keys()));
    return {{"logits", unet->forward(batch.fields.at(options_.image_field))}};
  }
  std::string default_visualizer() const override { return "segmentation"; }

  UNet unet{nullptr};

 private:
  UNetModelOptions options_;
};

FACET_REGISTER(model_registry(), "unet", "U-Net segmentation (milesial/Pytorch-UNet layout): logits [B, classes, H, W]",
               [](const Config& c) { return std::make_shared<UNetModel>(UNetModelOptions::from(c)); });

}  // namespace
}  // namespace facet::models::segmentation
