// Training-step time of a model in Facet (LibTorch, C++), compared by bench/train_step.py with the
// same model, batch, input, optimiser and threads in PyTorch (Python). Prints one JSON line.
//   train_step_bench [--model resnet18|resnet50|vit_b16|simple_cnn|mgrr_net] [--batch 16] [--size 112]
//                    [--steps 20] [--warmup 5] [--threads N] [--device cpu|cuda] [--dtype fp32|bf16]
//                    [--channels-last 0|1] [--fused 0|1] [--cudnn-benchmark 0|1] [--cuda-graph 0|1]
// The step is the trainer's: zero_grad (gradients set to none), forward, loss, backward, and the
// optimiser the trainer builds from `optim: {name: sgd, lr: 0.01, momentum: 0.9}` (fused unless
// --fused 0). --channels-last 1 is `train.channels_last: true` (NHWC weights and images).
// --dtype bf16 runs forward and loss under autocast (train/amp.h), as torch.autocast(device,
// torch.bfloat16) does in the Python side; on CUDA the timed region is bracketed by device syncs.
// --cuda-graph 1 (CUDA) replays the model's forward and backward as CUDA graphs through
// train/cuda_graph.h, as `train.cuda_graph: true` does (the Python side: make_graphed_callables).
//   resnet18/50   torchvision's ResNet, 10 classes, cross-entropy
//   vit_b16       ViT-B/16 (transformers' ViTModel, eps 1e-12) + a linear head on the CLS token
//   simple_cnn    the demo model (experiments/demo/shapes.yaml): 1 x 32 x 32 inputs, 4 classes; the
//                 step where per-op overhead, not arithmetic, dominates
//   mgrr_net      the `make demo` MGRR-Net (ResNet-18 trunk, dim 128, 2 layers, 12 AUs) on images
//                 and 68 landmarks, BCE; no Python side (no public implementation to compare with)
#include "bench/common.h"
#include "data/loader.h"
#include "models/backbones/resnet.h"
#include "models/backbones/vit.h"
#include "models/build.h"
#include "train/amp.h"
#include "train/cuda_graph.h"
#include "train/memory_format.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <sys/resource.h>

#include <functional>
#include <string>

using namespace facet;

namespace {

// The process's peak resident memory (Linux reports KiB).
double peak_rss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

// A model the step can train: its parameters, its logits for a batch, and the loss of those.
struct Workload {
  std::shared_ptr<torch::nn::Module> net;
  std::function<torch::Tensor(const data::Batch&)> forward;
  std::function<torch::Tensor(const torch::Tensor& logits, const data::Batch&)> loss;
  data::Batch batch;
};

Workload make_workload(const std::string& model, int64_t batch, int64_t size) {
  Workload w;
  w.loss = [](const torch::Tensor& logits, const data::Batch& b) {
    return torch::nn::functional::cross_entropy(logits, b.fields.at("label"));
  };
  if (model == "resnet18" || model == "resnet50") {
    models::ResNetOptions o;
    o.depth = model == "resnet18" ? 18 : 50;
    o.num_classes = 10;
    auto resnet = models::ResNet(o);
    w.net = resnet.ptr();
    w.forward = [resnet](const data::Batch& b) mutable { return resnet->forward(b.fields.at("image")); };
  } else if (model == "vit_b16") {
    models::ViTOptions o;
    o.image_size = size;
    o.norm_eps = 1e-12;  // as transformers' ViT
    auto vit = models::ViT(o);
    auto head = torch::nn::Linear(o.embed_dim, 10);
    auto both = std::make_shared<torch::nn::Module>();
    both->register_module("vit", vit);
    both->register_module("head", head);
    w.net = both;
    w.forward = [vit, head](const data::Batch& b) mutable { return head->forward(vit->forward(b.fields.at("image"))); };
  } else if (model == "simple_cnn" || model == "mgrr_net") {
    const bool cnn = model == "simple_cnn";
    auto m = models::build_model(Config::parse(cnn ? "name: simple_cnn" : "{name: mgrr_net, backbone_depth: 18, dim: 128, num_layers: 2}"));
    w.net = m;
    w.forward = [m](const data::Batch& b) { return m->forward(b).at("logits"); };
    if (!cnn)
      w.loss = [](const torch::Tensor& logits, const data::Batch& b) {
        return torch::nn::functional::binary_cross_entropy_with_logits(logits, b.fields.at("aus"));
      };
  } else {
    fmt::print(stderr, "train_step_bench: unknown --model {} (resnet18, resnet50, vit_b16, simple_cnn, mgrr_net)\n", model);
    std::exit(2);
  }
  // Drawn on the CPU (the CPU numbers stay comparable across devices), moved by the caller.
  const int64_t channels = model == "simple_cnn" ? 1 : 3, classes = model == "simple_cnn" ? 4 : 10;
  w.batch.fields["image"] = torch::randn({batch, channels, size, size});
  w.batch.fields["label"] = torch::randint(0, classes, {batch}, torch::kInt64);
  if (model == "mgrr_net") {
    w.batch.fields["landmarks"] = torch::rand({batch, 68, 2}) * (0.6 * static_cast<double>(size)) + 0.2 * static_cast<double>(size);
    w.batch.fields["aus"] = torch::randint(0, 2, {batch, 12}).to(torch::kFloat);
  }
  return w;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model = "resnet18";
  std::string device_name = "cpu", dtype = "fp32";
  int64_t batch = 16, size = 112, steps = 20, warmup = 5, threads = 0;
  bool channels_last = false, fused = true, cudnn_benchmark = false, cuda_graph = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--model") model = value;
    else if (flag == "--batch") batch = std::stoll(value);
    else if (flag == "--size") size = std::stoll(value);
    else if (flag == "--steps") steps = std::stoll(value);
    else if (flag == "--warmup") warmup = std::stoll(value);
    else if (flag == "--threads") threads = std::stoll(value);
    else if (flag == "--device") device_name = value;
    else if (flag == "--dtype") dtype = value;
    else if (flag == "--channels-last") channels_last = value == "1";
    else if (flag == "--fused") fused = value == "1";
    else if (flag == "--cudnn-benchmark") cudnn_benchmark = value == "1";
    else if (flag == "--cuda-graph") cuda_graph = value == "1";
    else {
      fmt::print(stderr, "train_step_bench: unknown flag {}\n", flag);
      return 2;
    }
  }
  if (device_name != "cpu" && device_name != "cuda") {
    fmt::print(stderr, "train_step_bench: unknown --device {} (cpu, cuda)\n", device_name);
    return 2;
  }
  if (dtype != "fp32" && dtype != "bf16") {
    fmt::print(stderr, "train_step_bench: unknown --dtype {} (fp32, bf16)\n", dtype);
    return 2;
  }
  if (cuda_graph && device_name != "cuda") {
    fmt::print(stderr, "train_step_bench: --cuda-graph 1 needs --device cuda\n");
    return 2;
  }
  if (device_name == "cuda" && !torch::cuda::is_available()) {
    fmt::print(stderr, "train_step_bench: --device cuda, but no CUDA device is usable\n");
    return 2;
  }
  const torch::Device device(device_name == "cuda" ? torch::kCUDA : torch::kCPU);
  const std::optional<torch::ScalarType> autocast =
      dtype == "bf16" ? std::optional<torch::ScalarType>(torch::kBFloat16) : std::nullopt;
  if (threads > 0) torch::set_num_threads(static_cast<int>(threads));
  data::keep_freed_buffers_in_the_heap();  // as in every Facet training process (its Loader does it)
  if (cudnn_benchmark) at::globalContext().setBenchmarkCuDNN(true);  // what train.cudnn_benchmark sets
  torch::manual_seed(0);
  Workload w = make_workload(model, batch, size);
  w.net->to(device);
  w.net->train();
  data::Batch b = w.batch.to(device);
  if (channels_last) {
    train::use_channels_last(*w.net);
    train::batch_to_channels_last(b);
  }
  auto optimizer = bench::optimizer(fmt::format("{{name: sgd, lr: 0.01, momentum: 0.9, fused: {}}}", fused), w.net->parameters());
  // The trainer's graph: the model's forward and backward, with the batch's fields as inputs.
  std::unique_ptr<train::GraphedFunction> graph;
  if (cuda_graph)
    graph = std::make_unique<train::GraphedFunction>(
        [&](const TensorDict& fields) {
          data::Batch in;
          in.fields = fields;
          return TensorDict{{"logits", w.forward(in)}};
        },
        w.net->parameters(), w.net.get());
  auto step = [&] {
    optimizer->zero_grad();
    torch::Tensor loss;
    {
      train::AutocastGuard guard(device, autocast);
      const torch::Tensor logits = graph ? (*graph)(b.fields).value().at("logits") : w.forward(b);
      loss = w.loss(logits, b);
    }
    loss.backward();
    optimizer->step();
  };
  const double ms = bench::ms_per_call(step, warmup, steps, [&] {
    if (device.is_cuda()) torch::cuda::synchronize();
  });
  fmt::print("{{\"impl\": \"facet\", \"model\": \"{}\", \"batch\": {}, \"size\": {}, \"threads\": {}, "
             "\"device\": \"{}\", \"dtype\": \"{}\", \"channels_last\": {}, \"fused\": {}, \"cuda_graph\": {}, "
             "\"ms_per_step\": {:.3f}, \"images_per_s\": {:.1f}, \"peak_rss_mib\": {:.0f}}}\n",
             model, batch, size, torch::get_num_threads(), device_name, dtype, channels_last, fused, cuda_graph, ms,
             1000.0 * static_cast<double>(batch) / ms, peak_rss_mib());
}
