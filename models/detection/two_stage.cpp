#include "models/detection/two_stage.h"

#include "core/error.h"

#include <cmath>

namespace facet::models::detection {

namespace nn = torch::nn;
namespace F = torch::nn::functional;

// --- options ---------------------------------------------------------------------------------------

namespace {

Config node(const Config& c, const std::string& key) { return c.has(key) ? c.at(key) : Config(); }

void read_assign(const Config& c, MaxIoUAssignerOptions& a) {
  a.pos_iou = c.get_in_range<double>("pos_iou", a.pos_iou, Range::closed(0, 1));
  a.neg_iou = c.get_in_range<double>("neg_iou", a.neg_iou, Range::closed(0, 1));
  a.min_pos_iou = c.get_in_range<double>("min_pos_iou", a.min_pos_iou, Range::closed(0, 1));
  a.match_low_quality = c.get<bool>("match_low_quality", a.match_low_quality);
  if (a.neg_iou > a.pos_iou)
    fail("{}: {}: neg_iou {} above pos_iou {}", c.where("neg_iou"), c.full_key("neg_iou"), a.neg_iou, a.pos_iou);
}

void read_sample(const Config& c, SamplerOptions& s) {
  s.num = c.get_in_range<int64_t>("num", s.num, Range::at_least(1));
  s.pos_fraction = c.get_in_range<double>("pos_fraction", s.pos_fraction, Range::closed(0, 1));
}

}  // namespace

TwoStageOptions TwoStageOptions::from(const Config& c, bool with_mask) {
  TwoStageOptions o;
  o.with_mask = with_mask;
  o.backbone = c.at("backbone");
  o.input = c.get<std::string>("input", o.input);
  o.num_classes = c.get_in_range<int64_t>("num_classes", o.num_classes, Range::at_least(1));
  if (c.has("fpn")) {
    const Config f = c.at("fpn");
    if (f.is_scalar()) {
      o.fpn = c.get<bool>("fpn");
    } else {
      o.fpn = true;
      o.fpn_channels = f.get_in_range<int64_t>("out_channels", o.fpn_channels, Range::at_least(1));
      o.fpn_extra_pool = f.get<bool>("extra_pool", o.fpn_extra_pool);
    }
  }
  // The reference configs' defaults: torchvision's fasterrcnn_resnet50_fpn with an FPN, the
  // A3D / SATr mmdetection config on one map.
  if (o.fpn) {
    o.anchors.strides.clear();  // the levels' strides (set by the detector)
    o.anchors.base_sizes = {32, 64, 128, 256, 512};
    o.anchors.scales = {1};
    o.anchors.round = true;
    o.rpn.feat_channels = o.fpn_channels;
    o.rpn.assign.min_pos_iou = 0.0;  // torchvision's Matcher: every ground truth keeps its best anchors
  } else {
    o.anchors.strides.clear();
    o.anchors.base_sizes.clear();  // = the map's stride (mmdet: anchor base = stride)
    o.rpn.feat_channels = 512;
    o.rpn.sample = {32, 0.5};
    o.rpn.pre_nms_train = 12000;
    o.rpn.post_nms_train = 2000;
    o.rpn.pre_nms_test = 6000;
    o.rpn.post_nms_test = 300;
    o.rpn.min_size = 0;
    o.roi.fc = 2048;
    o.roi.sample = {64, 0.25};
    o.roi.beta = 1.0;
    o.roi.score_threshold = 5e-5;
    o.roi.max_per_image = 50;
  }
  const Config a = node(c, "anchors");
  o.anchors.strides = a.get<std::vector<int64_t>>("strides", o.anchors.strides);
  o.anchors.base_sizes = a.get<std::vector<double>>("base_sizes", o.anchors.base_sizes);
  o.anchors.scales = a.get<std::vector<double>>("scales", o.anchors.scales);
  o.anchors.ratios = a.get<std::vector<double>>("ratios", o.anchors.ratios);
  o.anchors.center_offset = a.get_in_range<double>("center_offset", o.anchors.center_offset, Range::closed(0, 1));
  o.anchors.round = a.get<bool>("round", o.anchors.round);

  const Config r = node(c, "rpn");
  o.rpn.feat_channels = r.get_in_range<int64_t>("feat_channels", o.rpn.feat_channels, Range::at_least(1));
  read_assign(r, o.rpn.assign);
  read_sample(r, o.rpn.sample);
  o.rpn.pre_nms_train = r.get_in_range<int64_t>("pre_nms_train", o.rpn.pre_nms_train, Range::at_least(1));
  o.rpn.post_nms_train = r.get_in_range<int64_t>("post_nms_train", o.rpn.post_nms_train, Range::at_least(1));
  o.rpn.pre_nms_test = r.get_in_range<int64_t>("pre_nms_test", o.rpn.pre_nms_test, Range::at_least(1));
  o.rpn.post_nms_test = r.get_in_range<int64_t>("post_nms_test", o.rpn.post_nms_test, Range::at_least(1));
  o.rpn.nms = r.get_in_range<double>("nms", o.rpn.nms, Range::closed(0, 1));
  o.rpn.min_size = r.get_in_range<double>("min_size", o.rpn.min_size, Range::at_least(0));
  o.rpn.beta = r.get_in_range<double>("beta", o.rpn.beta, Range::at_least(0));
  o.rpn.loss_weight = r.get_in_range<double>("loss_weight", o.rpn.loss_weight, Range::at_least(0));
  const auto choice = [](const Config& cfg, const std::string& key, const std::string& value, std::initializer_list<const char*> allowed) {
    const auto v = cfg.get<std::string>(key, value);
    for (const char* a : allowed)
      if (v == a) return v;
    fail("{}: {}: expected one of {}, got \"{}\"", cfg.where(key), cfg.full_key(key), fmt::join(allowed, ", "), v);
  };
  o.rpn.objectness = choice(r, "objectness", o.rpn.objectness, {"iou", "bm"});
  o.rpn.sampling = choice(r, "sampling", o.rpn.sampling, {"iou", "bmc"});
  o.rpn.proposals = choice(r, "proposals", o.rpn.proposals, {"topk", "bm_conditioned"});
  o.rpn.size_aware_channels = r.get<bool>("size_aware_channels", o.rpn.size_aware_channels);
  o.rpn.size_aware_others = r.get_in_range<double>("size_aware_others", o.rpn.size_aware_others, Range::closed(0, 1));
  o.rpn.bmc.candidates = r.get_in_range<int64_t>("bmc_candidates", o.rpn.bmc.candidates, Range::at_least(1));
  o.rpn.conditioned.threshold = r.get_in_range<double>("conditioned_threshold", o.rpn.conditioned.threshold, Range::closed(0, 1));
  o.rpn.conditioned_min_width = r.get_in_range<int64_t>("conditioned_min_width", o.rpn.conditioned_min_width, Range::at_least(1));
  o.rpn.maps.offset = r.get<double>("bm_offset", o.rpn.maps.offset);

  const Config h = node(c, "roi");
  o.roi.output_size = h.get_in_range<int64_t>("output_size", o.roi.output_size, Range::at_least(1));
  o.roi.sampling_ratio = h.get<int64_t>("sampling_ratio", o.roi.sampling_ratio);
  o.roi.aligned = h.get<bool>("aligned", o.roi.aligned);
  o.roi.fc = h.get_in_range<int64_t>("fc", o.roi.fc, Range::at_least(1));
  read_assign(h, o.roi.assign);
  read_sample(h, o.roi.sample);
  o.roi.add_gt = h.get<bool>("add_gt", o.roi.add_gt);
  const auto stds = h.get<std::vector<double>>("stds", {o.roi.stds[0], o.roi.stds[1], o.roi.stds[2], o.roi.stds[3]});
  if (stds.size() != 4) fail("{}: {}: expected 4 values, got {}", h.where("stds"), h.full_key("stds"), stds.size());
  o.roi.stds = {stds[0], stds[1], stds[2], stds[3]};
  o.roi.class_agnostic = h.get<bool>("class_agnostic", o.roi.class_agnostic);
  o.roi.beta = h.get_in_range<double>("beta", o.roi.beta, Range::at_least(0));
  o.roi.loss_weight = h.get_in_range<double>("loss_weight", o.roi.loss_weight, Range::at_least(0));
  o.roi.score_threshold = h.get_in_range<double>("score_threshold", o.roi.score_threshold, Range::closed(0, 1));
  o.roi.nms = h.get_in_range<double>("nms", o.roi.nms, Range::closed(0, 1));
  o.roi.max_per_image = h.get_in_range<int64_t>("max_per_image", o.roi.max_per_image, Range::at_least(1));
  o.roi.finest_scale = h.get_in_range<double>("finest_scale", o.roi.finest_scale, Range::above(0));

  if (with_mask) {
    const Config m = node(c, "mask");
    o.mask.convs = m.get_in_range<int64_t>("convs", o.mask.convs, Range::at_least(0));
    o.mask.channels = m.get_in_range<int64_t>("channels", o.mask.channels, Range::at_least(1));
    o.mask.output_size = m.get_in_range<int64_t>("output_size", o.mask.output_size, Range::at_least(1));
    o.mask.targets = m.get<std::string>("targets", o.mask.targets);
    if (o.mask.targets != "masks" && o.mask.targets != "boxes" && o.mask.targets != "abm")
      fail("{}: {}: expected masks, boxes or abm, got \"{}\"", m.where("targets"), m.full_key("targets"), o.mask.targets);
    const Config abm = node(m, "abm");
    o.mask.abm.small_half_area = abm.get_in_range<double>("small_half_area", o.mask.abm.small_half_area, Range::at_least(0));
    o.mask.abm.center_plateau = abm.get<bool>("center_plateau", o.mask.abm.center_plateau);
    o.mask.abm.plateau = abm.get_in_range<int64_t>("plateau", o.mask.abm.plateau, Range::at_least(0));
    o.mask.loss_weight = m.get_in_range<double>("loss_weight", o.mask.loss_weight, Range::at_least(0));
  } else if (c.has("mask")) {
    fail("{}: {}: faster_rcnn has no mask head (use mask_rcnn)", c.where("mask"), c.full_key("mask"));
  }
  return o;
}

// --- FPN -------------------------------------------------------------------------------------------

FpnImpl::FpnImpl(const std::vector<int64_t>& in_channels, int64_t out_channels, bool extra_pool) : extra_pool_(extra_pool) {
  inner_blocks = register_module("inner_blocks", nn::ModuleList());
  layer_blocks = register_module("layer_blocks", nn::ModuleList());
  for (int64_t in : in_channels) {
    // Sequential wrappers: torchvision's Conv2dNormActivation names (inner_blocks.0.0.weight).
    inner_blocks->push_back(nn::Sequential(nn::Conv2d(nn::Conv2dOptions(in, out_channels, 1))));
    layer_blocks->push_back(nn::Sequential(nn::Conv2d(nn::Conv2dOptions(out_channels, out_channels, 3).padding(1))));
  }
  for (auto& m : modules(false))
    if (auto* conv = m->as<nn::Conv2d>()) {
      nn::init::kaiming_uniform_(conv->weight, 1.0);
      nn::init::zeros_(conv->bias);
    }
}

std::vector<torch::Tensor> FpnImpl::forward(const std::vector<torch::Tensor>& x) {
  const auto n = x.size();
  if (n != inner_blocks->size()) fail("fpn: {} feature maps for {} levels", n, inner_blocks->size());
  std::vector<torch::Tensor> out(n);
  torch::Tensor last = inner_blocks[n - 1]->as<nn::Sequential>()->forward(x[n - 1]);
  out[n - 1] = layer_blocks[n - 1]->as<nn::Sequential>()->forward(last);
  for (size_t i = n - 1; i-- > 0;) {
    const auto lateral = inner_blocks[i]->as<nn::Sequential>()->forward(x[i]);
    const auto top_down = F::interpolate(last, F::InterpolateFuncOptions()
                                                   .size(std::vector<int64_t>{lateral.size(2), lateral.size(3)})
                                                   .mode(torch::kNearest));
    last = lateral + top_down;
    out[i] = layer_blocks[i]->as<nn::Sequential>()->forward(last);
  }
  if (extra_pool_) out.push_back(F::max_pool2d(out.back(), F::MaxPool2dFuncOptions(1).stride(2)));
  return out;
}

// --- RPN head --------------------------------------------------------------------------------------

RpnHeadImpl::RpnHeadImpl(int64_t in_channels, int64_t feat_channels, int64_t num_anchors) : num_anchors_(num_anchors) {
  conv = register_module("conv", nn::Sequential(nn::Conv2d(nn::Conv2dOptions(in_channels, feat_channels, 3).padding(1)), nn::ReLU(true)));
  cls_logits = register_module("cls_logits", nn::Conv2d(nn::Conv2dOptions(feat_channels, num_anchors, 1)));
  bbox_pred = register_module("bbox_pred", nn::Conv2d(nn::Conv2dOptions(feat_channels, 4 * num_anchors, 1)));
  for (auto& m : modules(false))
    if (auto* c = m->as<nn::Conv2d>()) {
      nn::init::normal_(c->weight, 0.0, 0.01);
      nn::init::zeros_(c->bias);
    }
}

std::vector<std::pair<torch::Tensor, torch::Tensor>> RpnHeadImpl::forward(const std::vector<torch::Tensor>& levels) {
  std::vector<std::pair<torch::Tensor, torch::Tensor>> out;
  for (const auto& x : levels) {
    const auto t = conv->forward(x);
    const int64_t b = x.size(0), h = x.size(2), w = x.size(3);
    const auto logits = cls_logits->forward(t).permute({0, 2, 3, 1}).reshape({b, -1});
    const auto deltas = bbox_pred->forward(t).view({b, num_anchors_, 4, h, w}).permute({0, 3, 4, 1, 2}).reshape({b, -1, 4});
    out.emplace_back(logits, deltas);
  }
  return out;
}

// --- detector --------------------------------------------------------------------------------------

TwoStageDetector::TwoStageDetector(TwoStageOptions options)
    : options_(std::move(options)), anchor_generator_(AnchorGeneratorOptions{}) {
  backbone = register_module("backbone", backbone_registry().create(options_.backbone));
  const auto info = backbone->feature_info();
  if (info.empty()) fail("{}: the backbone returns no feature map", options_.backbone.prefix());
  int64_t head_channels = 0;
  if (options_.fpn) {
    std::vector<int64_t> channels;
    for (const auto& f : info) {
      channels.push_back(f.channels);
      level_strides_.push_back(f.stride);
    }
    fpn = register_module("fpn", Fpn(channels, options_.fpn_channels, options_.fpn_extra_pool));
    if (options_.fpn_extra_pool) level_strides_.push_back(level_strides_.back() * 2);
    head_channels = options_.fpn_channels;
    roi_levels_ = static_cast<int64_t>(info.size());
  } else {
    level_strides_ = {info.back().stride};
    head_channels = info.back().channels;
    roi_levels_ = 1;
  }
  auto& a = options_.anchors;
  if (a.strides.empty()) a.strides = level_strides_;
  if (a.strides != level_strides_)
    fail("{}: anchors.strides [{}] do not match the strides of the maps the heads see [{}]", options_.backbone.prefix(),
         fmt::join(a.strides, ", "), fmt::join(level_strides_, ", "));
  if (!a.base_sizes.empty() && a.base_sizes.size() != a.strides.size())
    fail("anchors.base_sizes: {} sizes for {} levels (strides [{}])", a.base_sizes.size(), a.strides.size(), fmt::join(a.strides, ", "));
  anchor_generator_ = AnchorGenerator(a);
  if (options_.rpn.size_aware_channels && a.base_sizes.size() > 1 &&
      std::adjacent_find(a.base_sizes.begin(), a.base_sizes.end(), std::not_equal_to<>()) != a.base_sizes.end())
    fail("rpn.size_aware_channels: the anchor channels must mean the same sizes on every level (base_sizes [{}])",
         fmt::join(a.base_sizes, ", "));
  rpn = register_module("rpn", RpnHead(head_channels, options_.rpn.feat_channels, anchor_generator_.num_anchors()));
  const int64_t s = options_.roi.output_size, classes = options_.num_classes + 1;
  fc6 = register_module("fc6", nn::Linear(head_channels * s * s, options_.roi.fc));
  fc7 = register_module("fc7", nn::Linear(options_.roi.fc, options_.roi.fc));
  cls_score = register_module("cls_score", nn::Linear(options_.roi.fc, classes));
  bbox_pred = register_module("bbox_pred", nn::Linear(options_.roi.fc, options_.roi.class_agnostic ? 4 : 4 * classes));
  nn::init::normal_(cls_score->weight, 0.0, 0.01);
  nn::init::zeros_(cls_score->bias);
  nn::init::normal_(bbox_pred->weight, 0.0, 0.001);
  nn::init::zeros_(bbox_pred->bias);
  if (options_.with_mask) {
    nn::Sequential m;
    int64_t in = head_channels;
    for (int64_t i = 0; i < options_.mask.convs; ++i) {
      m->push_back(nn::Conv2d(nn::Conv2dOptions(in, options_.mask.channels, 3).padding(1)));
      m->push_back(nn::ReLU(true));
      in = options_.mask.channels;
    }
    m->push_back(nn::ConvTranspose2d(nn::ConvTranspose2dOptions(in, options_.mask.channels, 2).stride(2)));
    m->push_back(nn::ReLU(true));
    m->push_back(nn::Conv2d(nn::Conv2dOptions(options_.mask.channels, classes, 1)));
    for (auto& mod : m->modules(false)) {
      if (auto* c = mod->as<nn::Conv2d>()) {
        nn::init::kaiming_normal_(c->weight, 0.0, torch::kFanOut, torch::kReLU);
        nn::init::zeros_(c->bias);
      } else if (auto* d = mod->as<nn::ConvTranspose2d>()) {
        nn::init::kaiming_normal_(d->weight, 0.0, torch::kFanOut, torch::kReLU);
        nn::init::zeros_(d->bias);
      }
    }
    mask_head = register_module("mask_head", m);
  }
}

torch::Tensor TwoStageDetector::images(const data::Batch& batch) const {
  if (!batch.fields.contains(options_.input)) fail("{}: the batch has no field \"{}\"", options_.backbone.prefix(), options_.input);
  auto x = batch.fields.at(options_.input);
  if (x.dim() == 3) x = x.unsqueeze(1);
  if (x.dim() != 4) fail("detector: expected {} as [B, S, H, W] or [B, H, W], got {}", options_.input, x.sizes());
  return x.to(torch::kFloat);
}

std::vector<torch::Tensor> TwoStageDetector::features(const torch::Tensor& x) {
  const auto maps = backbone->forward_features(x);
  std::vector<torch::Tensor> levels;
  for (const auto& f : backbone->feature_info()) levels.push_back(maps.at(f.name));
  if (fpn) return fpn->forward(levels);
  return {levels.back()};
}

std::vector<torch::Tensor> TwoStageDetector::anchors(const std::vector<torch::Tensor>& levels) const {
  std::vector<torch::Tensor> out;
  level_sizes_.clear();
  for (size_t l = 0; l < levels.size(); ++l) {
    out.push_back(anchor_generator_.grid_anchors(l, levels[l].size(2), levels[l].size(3), levels[l].device()));
    level_sizes_.emplace_back(levels[l].size(2), levels[l].size(3));
  }
  return out;
}

torch::Tensor TwoStageDetector::bm_anchor_targets(const torch::Tensor& gt_boxes, const std::vector<torch::Tensor>& levels,
                                                  int64_t height, int64_t width) const {
  std::vector<std::pair<int64_t, int64_t>> sizes;
  for (const auto& l : levels) sizes.emplace_back(l.size(2), l.size(3));
  const auto map = bounding_maps(gt_boxes, height, width, options_.rpn.maps).xy;
  SizeAwareChannels channels;
  if (options_.rpn.size_aware_channels) {
    const auto& a = options_.anchors;
    const double base = a.base_sizes.empty() ? static_cast<double>(a.strides.front()) : a.base_sizes.front();
    for (double s : a.scales) channels.anchor_areas.push_back(base * s * base * s);
    channels.num_ratios = static_cast<int64_t>(a.ratios.size());
    channels.others = options_.rpn.size_aware_others;
  }
  return anchor_map_targets(map, sizes, anchor_generator_.num_anchors(), gt_boxes, channels);
}

std::vector<torch::Tensor> TwoStageDetector::proposals(const std::vector<torch::Tensor>& anchors,
                                                       const std::vector<std::pair<torch::Tensor, torch::Tensor>>& rpn_out,
                                                       int64_t height, int64_t width, bool training) {
  torch::NoGradGuard no_grad;
  const BoxCoder coder;  // RPN deltas: means 0, stds 1 (both references)
  const int64_t pre = training ? options_.rpn.pre_nms_train : options_.rpn.pre_nms_test;
  const int64_t post = training ? options_.rpn.post_nms_train : options_.rpn.post_nms_test;
  const int64_t b = rpn_out.front().first.size(0);
  std::vector<torch::Tensor> out;
  for (int64_t i = 0; i < b; ++i) {
    std::vector<torch::Tensor> boxes, scores, level_ids;
    std::vector<torch::Tensor> extra;  // bm_conditioned: component boxes, appended after NMS
    for (size_t l = 0; l < rpn_out.size(); ++l) {
      const auto logits = rpn_out[l].first[i].detach().to(torch::kFloat);
      torch::Tensor index;
      const int64_t num_a = anchor_generator_.num_anchors();
      const int64_t lw = level_sizes_.at(l).second, lh = level_sizes_.at(l).first;
      if (options_.rpn.proposals == "bm_conditioned" && lw >= options_.rpn.conditioned_min_width) {
        // Half the pool: the usual top scores; the other half: anchors near the objectness components.
        const int64_t n = std::min(pre, logits.size(0));
        index = std::get<1>(logits.topk(n / 2));
        const auto objectness = logits.sigmoid().view({lh, lw, num_a}).permute({2, 0, 1});
        const auto [ids, comp] = bm_conditioned_anchors(objectness, anchors[l], options_.anchors.strides.at(l),
                                                        std::max<int64_t>(1, pre / (2 * num_a)), options_.rpn.conditioned);
        if (ids.numel() > 0) index = std::get<0>(torch::_unique(torch::cat({index, ids}), false));
        if (comp.size(0) > 0) extra.push_back(comp);
      } else {
        index = std::get<1>(logits.topk(std::min(pre, logits.size(0))));
      }
      boxes.push_back(coder.decode(anchors[l].index_select(0, index), rpn_out[l].second[i].detach().to(torch::kFloat).index_select(0, index)));
      scores.push_back(logits.index_select(0, index).sigmoid());
      level_ids.push_back(torch::full({index.size(0)}, static_cast<int64_t>(l), index.options()));
    }
    auto all = clip_boxes(torch::cat(boxes), height, width);
    auto score = torch::cat(scores), level = torch::cat(level_ids);
    const auto big = remove_small_boxes(all, options_.rpn.min_size);
    all = all.index_select(0, big);
    score = score.index_select(0, big);
    level = level.index_select(0, big);
    const auto keep = batched_nms(all, score, level, options_.rpn.nms, post);
    extra.insert(extra.begin(), all.index_select(0, keep));
    out.push_back(extra.size() == 1 ? extra.front() : clip_boxes(torch::cat(extra), height, width));
  }
  return out;
}

torch::Tensor TwoStageDetector::pool(const std::vector<torch::Tensor>& levels, const std::vector<torch::Tensor>& boxes,
                                     int64_t size, int64_t sampling_ratio) const {
  std::vector<torch::Tensor> rois;
  for (size_t i = 0; i < boxes.size(); ++i)
    rois.push_back(torch::cat({torch::full({boxes[i].size(0), 1}, static_cast<double>(i), boxes[i].options()), boxes[i]}, 1));
  const auto all = torch::cat(rois);
  RoIAlignOptions o;
  o.output_h = o.output_w = size;
  o.sampling_ratio = sampling_ratio;
  o.aligned = options_.roi.aligned;
  if (roi_levels_ == 1) {
    o.spatial_scale = 1.0 / static_cast<double>(level_strides_.front());
    return roi_align(levels.front(), all, o);
  }
  // mmdetection's mapping: floor(log2(sqrt(area) / finest_scale)), the same as torchvision's LevelMapper.
  const auto scale = torch::sqrt(box_area(all.narrow(1, 1, 4)).clamp_min(0));
  const auto target = torch::floor(torch::log2(scale / options_.roi.finest_scale + 1e-6)).clamp(0, static_cast<double>(roi_levels_ - 1)).to(torch::kLong);
  std::vector<torch::Tensor> pooled, order;
  for (int64_t l = 0; l < roi_levels_; ++l) {
    const auto idx = torch::nonzero(target == l).view(-1);
    if (idx.numel() == 0) continue;
    o.spatial_scale = 1.0 / static_cast<double>(level_strides_[static_cast<size_t>(l)]);
    pooled.push_back(roi_align(levels[static_cast<size_t>(l)], all.index_select(0, idx), o));
    order.push_back(idx);
  }
  if (pooled.empty()) return torch::zeros({0, levels.front().size(1), size, size}, levels.front().options());
  return torch::cat(pooled).index_select(0, torch::argsort(torch::cat(order)));
}

std::pair<torch::Tensor, torch::Tensor> TwoStageDetector::box_head(const torch::Tensor& pooled) {
  auto x = torch::relu(fc6->forward(pooled.flatten(1)));
  x = torch::relu(fc7->forward(x));
  return {cls_score->forward(x), bbox_pred->forward(x)};
}

namespace {

struct Truth {
  std::vector<torch::Tensor> boxes, labels, masks;
};

Truth truth(const data::Batch& batch, const torch::Device& device, int64_t num_classes, bool masks) {
  if (!batch.ragged.contains("boxes")) fail("detector: the batch has no ragged field \"boxes\" (ground-truth boxes per image)");
  Truth t;
  const auto& boxes = batch.ragged.at("boxes");
  for (size_t i = 0; i < boxes.size(); ++i) {
    const auto b = boxes[i].to(device, torch::kFloat).reshape({-1, 4});
    t.boxes.push_back(b);
    torch::Tensor l = batch.ragged.contains("box_labels") ? batch.ragged.at("box_labels")[i].to(device, torch::kLong).reshape({-1})
                                                          : torch::ones({b.size(0)}, torch::TensorOptions().dtype(torch::kLong).device(device));
    if (l.numel() > 0 && (l.min().item<int64_t>() < 1 || l.max().item<int64_t>() > num_classes))
      fail("detector: box_labels of {} must be in 1..{} (0 is the background), got {}..{}",
           batch.ids.size() > i ? batch.ids[i] : std::to_string(i), num_classes, l.min().item<int64_t>(), l.max().item<int64_t>());
    t.labels.push_back(l);
    if (masks) {
      // Per-box fields are box_* (data/dataset.h); DeepLesion's GrabCut pseudo-masks arrive as box_masks.
      if (!batch.ragged.contains("box_masks"))
        fail("mask_rcnn: the batch has no ragged field \"box_masks\" ([n, H, W] per image, e.g. deeplesion with "
             "masks: grabcut); set model.mask.targets: boxes to train on the ellipse inscribed in each box");
      t.masks.push_back(batch.ragged.at("box_masks")[i].to(device, torch::kFloat));
    }
  }
  return t;
}

// Mask targets on each positive RoI's size x size grid: the ground-truth mask resampled (torchvision's
// project_masks_on_boxes: RoIAlign, legacy, then >= 0.5), or the ellipse inscribed in the ground-truth box.
torch::Tensor mask_targets(const torch::Tensor& rois, const torch::Tensor& gt_boxes, const torch::Tensor& gt_masks,
                           int64_t size, bool from_boxes) {
  if (!from_boxes) {
    RoIAlignOptions o;
    o.output_h = o.output_w = size;
    o.sampling_ratio = 0;
    o.aligned = false;
    const auto index = torch::arange(rois.size(0), rois.options()).unsqueeze(1);
    return (roi_align(gt_masks.unsqueeze(1), torch::cat({index, rois}, 1), o).squeeze(1) >= 0.5).to(rois.scalar_type());
  }
  const auto steps = (torch::arange(size, rois.options()) + 0.5) / static_cast<double>(size);  // [S]
  const auto x = rois.select(1, 0).unsqueeze(1) + steps.unsqueeze(0) * (rois.select(1, 2) - rois.select(1, 0)).unsqueeze(1);
  const auto y = rois.select(1, 1).unsqueeze(1) + steps.unsqueeze(0) * (rois.select(1, 3) - rois.select(1, 1)).unsqueeze(1);
  const auto cx = (gt_boxes.select(1, 0) + gt_boxes.select(1, 2)) / 2, cy = (gt_boxes.select(1, 1) + gt_boxes.select(1, 3)) / 2;
  const auto rx = ((gt_boxes.select(1, 2) - gt_boxes.select(1, 0)) / 2).clamp_min(1e-3), ry = ((gt_boxes.select(1, 3) - gt_boxes.select(1, 1)) / 2).clamp_min(1e-3);
  const auto dx = ((x - cx.unsqueeze(1)) / rx.unsqueeze(1)).pow(2), dy = ((y - cy.unsqueeze(1)) / ry.unsqueeze(1)).pow(2);
  return (dy.unsqueeze(2) + dx.unsqueeze(1) <= 1).to(rois.scalar_type());  // [P, S(y), S(x)]
}

// mmdetection 2.x DiceLoss (use_sigmoid, eps 1e-3): 1 - 2 Σpt / (Σp² + Σt² + 2 eps), per RoI.
torch::Tensor dice_loss(const torch::Tensor& logits, const torch::Tensor& targets) {
  const auto p = logits.sigmoid().flatten(1), t = targets.flatten(1);
  const double eps = 1e-3;
  return 1 - 2 * (p * t).sum(1) / ((p * p).sum(1) + eps + (t * t).sum(1) + eps);
}

}  // namespace

losses::LossResult TwoStageDetector::forward_losses(const data::Batch& batch, Outputs& outputs) {
  const auto x = images(batch);
  const int64_t b = x.size(0), height = x.size(2), width = x.size(3);
  const auto levels = features(x);
  const auto level_anchors = anchors(levels);
  const auto rpn_out = rpn->forward(levels);
  const Truth gt = truth(batch, x.device(), options_.num_classes, options_.with_mask && options_.mask.targets == "masks");
  if (static_cast<int64_t>(gt.boxes.size()) != b) fail("detector: {} images, {} lists of boxes", b, gt.boxes.size());

  // RPN: anchors assigned by IoU, a balanced sample per image, BCE + smooth L1 over the sample.
  const auto all_anchors = torch::cat(level_anchors);
  std::vector<torch::Tensor> logits_l, deltas_l;
  for (const auto& [l, d] : rpn_out) {
    logits_l.push_back(l);
    deltas_l.push_back(d);
  }
  const auto rpn_logits = torch::cat(logits_l, 1), rpn_deltas = torch::cat(deltas_l, 1);
  const BoxCoder rpn_coder;
  std::vector<torch::Tensor> rpn_cls(static_cast<size_t>(b)), rpn_box(static_cast<size_t>(b));
  int64_t rpn_count = 0, rpn_cls_count = 0;
  const bool bm_objectness = options_.rpn.objectness == "bm", bmc = options_.rpn.sampling == "bmc";
  const auto bce_sum = F::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kSum);
  for (int64_t i = 0; i < b; ++i) {
    const auto& g = gt.boxes[static_cast<size_t>(i)];
    // BM_xy at every anchor (bounding_maps.h), from this batch's boxes at the input size, i.e. after
    // the augmentation.
    const auto bm = (bm_objectness || bmc) ? bm_anchor_targets(g, levels, height, width) : torch::Tensor();
    torch::Tensor pos, neg, pos_gt;
    if (bmc) {
      const auto s = sample_bmc(all_anchors, g, bm, options_.rpn.sample.num, options_.rpn.sample.pos_fraction, options_.rpn.bmc);
      pos = s.pos, neg = s.neg, pos_gt = s.pos_gt;
    } else {
      const auto a = assign_max_iou(all_anchors, g, options_.rpn.assign);
      const auto s = sample_random(a.gt_index, options_.rpn.sample);
      pos = s.pos, neg = s.neg, pos_gt = a.gt_index.index_select(0, s.pos) - 1;
    }
    const auto idx = torch::cat({pos, neg});
    if (bm_objectness && !bmc) {  // every anchor, soft targets (BMMVP: no sampling)
      rpn_cls[static_cast<size_t>(i)] = F::binary_cross_entropy_with_logits(rpn_logits[i], bm.to(rpn_logits.scalar_type()), bce_sum);
      rpn_cls_count += rpn_logits.size(1);
    } else {
      const auto labels = bm_objectness ? bm.index_select(0, idx).to(x.scalar_type())
                                        : torch::cat({torch::ones({pos.size(0)}, x.options()), torch::zeros({neg.size(0)}, x.options())});
      rpn_cls[static_cast<size_t>(i)] = F::binary_cross_entropy_with_logits(rpn_logits[i].index_select(0, idx), labels, bce_sum);
      rpn_cls_count += idx.size(0);
    }
    if (pos.size(0) > 0) {
      const auto targets = rpn_coder.encode(all_anchors.index_select(0, pos), g.index_select(0, pos_gt));
      rpn_box[static_cast<size_t>(i)] = at::smooth_l1_loss(rpn_deltas[i].index_select(0, pos), targets, at::Reduction::Sum, options_.rpn.beta);
    } else {
      rpn_box[static_cast<size_t>(i)] = rpn_deltas[i].sum() * 0;
    }
    rpn_count += idx.size(0);
  }

  // RoI head on the sampled proposals (ground truths added).
  auto props = proposals(level_anchors, rpn_out, height, width, true);
  BoxCoder roi_coder;
  roi_coder.stds = options_.roi.stds;
  std::vector<torch::Tensor> sampled, labels, targets, pos_gt;
  std::vector<int64_t> counts, pos_counts;
  for (int64_t i = 0; i < b; ++i) {
    const auto& g = gt.boxes[static_cast<size_t>(i)];
    auto p = props[static_cast<size_t>(i)];
    if (options_.roi.add_gt) p = torch::cat({p, g});
    const auto a = assign_max_iou(p, g, options_.roi.assign);
    const auto s = sample_random(a.gt_index, options_.roi.sample);
    const auto matched = a.gt_index.index_select(0, s.pos) - 1;
    const auto pos_boxes = p.index_select(0, s.pos);
    sampled.push_back(torch::cat({pos_boxes, p.index_select(0, s.neg)}));
    labels.push_back(torch::cat({gt.labels[static_cast<size_t>(i)].index_select(0, matched), torch::zeros({s.neg.size(0)}, matched.options())}));
    targets.push_back(roi_coder.encode(pos_boxes, g.index_select(0, matched)));
    pos_gt.push_back(matched);
    counts.push_back(s.pos.size(0) + s.neg.size(0));
    pos_counts.push_back(s.pos.size(0));
  }
  const auto pooled = pool(levels, sampled, options_.roi.output_size, options_.roi.sampling_ratio);
  const auto [cls, deltas] = box_head(pooled);
  const auto cls_all = F::cross_entropy(cls, torch::cat(labels), F::CrossEntropyFuncOptions().reduction(torch::kNone));
  const auto box_deltas = deltas.view({deltas.size(0), deltas.size(1) / 4, 4});
  std::vector<torch::Tensor> rcnn_cls, rcnn_box, mask_loss;
  int64_t start = 0, roi_count = 0, mask_count = 0;
  std::vector<torch::Tensor> pos_rows, pos_labels;
  for (int64_t i = 0; i < b; ++i) {
    const int64_t n = counts[static_cast<size_t>(i)], np = pos_counts[static_cast<size_t>(i)];
    rcnn_cls.push_back(cls_all.narrow(0, start, n).sum());
    const auto rows = torch::arange(start, start + np, torch::TensorOptions().dtype(torch::kLong).device(x.device()));
    const auto lab = labels[static_cast<size_t>(i)].narrow(0, 0, np);
    const auto chosen = options_.roi.class_agnostic ? box_deltas.select(1, 0).index_select(0, rows)
                                                    : box_deltas.index({rows, lab});
    rcnn_box.push_back(np > 0 ? at::smooth_l1_loss(chosen, targets[static_cast<size_t>(i)], at::Reduction::Sum, options_.roi.beta)
                              : deltas.sum() * 0);
    pos_rows.push_back(rows);
    pos_labels.push_back(lab);
    start += n;
    roi_count += n;
    mask_count += np;
  }

  if (options_.with_mask) {
    std::vector<torch::Tensor> pos_boxes;
    for (int64_t i = 0; i < b; ++i) pos_boxes.push_back(sampled[static_cast<size_t>(i)].narrow(0, 0, pos_counts[static_cast<size_t>(i)]));
    const auto mask_pooled = pool(levels, pos_boxes, options_.mask.output_size, 2);
    const auto mask_logits = mask_head->forward(mask_pooled);  // [P, classes, 2 s, 2 s]
    const int64_t m = mask_logits.size(-1);
    int64_t at = 0;
    for (int64_t i = 0; i < b; ++i) {
      const int64_t np = pos_counts[static_cast<size_t>(i)];
      if (np == 0) {
        mask_loss.push_back(mask_logits.sum() * 0);
        continue;
      }
      const auto rows = torch::arange(at, at + np, torch::TensorOptions().dtype(torch::kLong).device(x.device()));
      const auto chosen = mask_logits.index({rows, pos_labels[static_cast<size_t>(i)]});
      const auto& matched = pos_gt[static_cast<size_t>(i)];
      const bool from_boxes = options_.mask.targets == "boxes";
      if (options_.mask.targets == "abm") {
        // ABM of each positive's own ground truth at the input size (one map per ground truth, each
        // positive RoI pooling from its match's), RoIAligned to the mask grid: a soft target.
        const auto abm = box_bounding_maps(gt.boxes[static_cast<size_t>(i)], height, width, options_.mask.abm).xy;
        RoIAlignOptions o;
        o.output_h = o.output_w = m;
        o.sampling_ratio = 0;
        o.aligned = false;
        const auto& rois = pos_boxes[static_cast<size_t>(i)];
        const auto index = matched.to(rois.scalar_type()).unsqueeze(1);
        const auto t = roi_align(abm.unsqueeze(1).to(rois.scalar_type()), torch::cat({index, rois}, 1), o).squeeze(1);
        mask_loss.push_back(dice_loss(chosen, t).sum());
        at += np;
        continue;
      }
      const auto t = mask_targets(pos_boxes[static_cast<size_t>(i)], gt.boxes[static_cast<size_t>(i)].index_select(0, matched),
                                  from_boxes ? torch::Tensor() : gt.masks[static_cast<size_t>(i)].index_select(0, matched), m, from_boxes);
      mask_loss.push_back(dice_loss(chosen, t).sum());
      at += np;
    }
  }

  // Losses averaged over the batch's samples (as the references normalise); per image, each image's
  // sum over that average count, so their mean is the total.
  const double rpn_norm = static_cast<double>(std::max<int64_t>(rpn_count, 1));
  const double rpn_cls_norm = static_cast<double>(std::max<int64_t>(rpn_cls_count, 1));
  const double roi_norm = static_cast<double>(std::max<int64_t>(roi_count, 1));
  const double mask_norm = static_cast<double>(std::max<int64_t>(mask_count, 1));
  const double fb = static_cast<double>(b);
  losses::LossResult r;
  const auto stack = [](const std::vector<torch::Tensor>& v) { return torch::stack(v); };
  const auto w_rpn = options_.rpn.loss_weight, w_roi = options_.roi.loss_weight;
  auto per = (stack(rpn_cls) * (fb / rpn_cls_norm) + stack(rpn_box) * (fb / rpn_norm)) * w_rpn + (stack(rcnn_cls) + stack(rcnn_box)) * (w_roi * fb / roi_norm);
  r.parts["rpn_cls"] = stack(rpn_cls).sum() / rpn_cls_norm;
  r.parts["rpn_box"] = stack(rpn_box).sum() / rpn_norm;
  r.parts["rcnn_cls"] = stack(rcnn_cls).sum() / roi_norm;
  r.parts["rcnn_box"] = stack(rcnn_box).sum() / roi_norm;
  if (options_.with_mask) {
    per = per + stack(mask_loss) * (options_.mask.loss_weight * fb / mask_norm);
    r.parts["mask"] = stack(mask_loss).sum() / mask_norm;
  }
  r.total = per.mean();
  r.per_sample = per.detach();
  outputs = Outputs();
  return r;
}

Outputs TwoStageDetector::forward(const data::Batch& batch) {
  const auto x = images(batch);
  const int64_t b = x.size(0), height = x.size(2), width = x.size(3);
  const auto levels = features(x);
  const auto rpn_out = rpn->forward(levels);
  const auto props = proposals(anchors(levels), rpn_out, height, width, false);
  const auto [cls, deltas] = box_head(pool(levels, props, options_.roi.output_size, options_.roi.sampling_ratio));
  const auto probs = torch::softmax(cls.to(torch::kFloat), 1);
  BoxCoder coder;
  coder.stds = options_.roi.stds;
  const int64_t classes = options_.num_classes;
  Outputs out;
  std::vector<torch::Tensor> final_boxes, final_labels;
  int64_t start = 0;
  for (int64_t i = 0; i < b; ++i) {
    const int64_t n = props[static_cast<size_t>(i)].size(0);
    auto d = deltas.narrow(0, start, n).to(torch::kFloat);
    auto boxes = coder.decode(props[static_cast<size_t>(i)], d).view({n, d.size(1) / 4, 4});
    if (options_.roi.class_agnostic) boxes = boxes.expand({n, classes + 1, 4});
    boxes = clip_boxes(boxes.narrow(1, 1, classes), height, width).reshape({-1, 4});
    auto scores = probs.narrow(0, start, n).narrow(1, 1, classes).reshape({-1});
    auto labels = torch::arange(1, classes + 1, torch::TensorOptions().dtype(torch::kLong).device(x.device())).repeat({n});
    auto keep = torch::nonzero(scores > options_.roi.score_threshold).view(-1);
    boxes = boxes.index_select(0, keep), scores = scores.index_select(0, keep), labels = labels.index_select(0, keep);
    keep = remove_small_boxes(boxes, 1e-2);
    boxes = boxes.index_select(0, keep), scores = scores.index_select(0, keep), labels = labels.index_select(0, keep);
    keep = batched_nms(boxes, scores, labels, options_.roi.nms, options_.roi.max_per_image);
    out.ragged["boxes"].push_back(boxes.index_select(0, keep).detach());
    out.ragged["scores"].push_back(scores.index_select(0, keep).detach());
    out.ragged["labels"].push_back(labels.index_select(0, keep));
    final_boxes.push_back(out.ragged["boxes"].back());
    final_labels.push_back(out.ragged["labels"].back());
    start += n;
  }
  if (options_.with_mask) {
    const auto logits = mask_head->forward(pool(levels, final_boxes, options_.mask.output_size, 2));
    int64_t at = 0;
    for (int64_t i = 0; i < b; ++i) {
      const int64_t n = final_boxes[static_cast<size_t>(i)].size(0);
      const auto rows = torch::arange(at, at + n, torch::TensorOptions().dtype(torch::kLong).device(x.device()));
      out.ragged["mask_probs"].push_back(logits.index({rows, final_labels[static_cast<size_t>(i)]}).sigmoid().detach());
      at += n;
    }
  }
  return out;
}

namespace {

FACET_REGISTER(model_registry(), "faster_rcnn",
               "Faster R-CNN: backbone by name (+ FPN), RPN, two-FC RoI head; torchvision / A3D-SATr defaults "
               "(backbone, num_classes, fpn, anchors, rpn, roi)",
               [](const Config& c) { return std::make_shared<TwoStageDetector>(TwoStageOptions::from(c, false)); });
FACET_REGISTER(model_registry(), "mask_rcnn",
               "Mask R-CNN: Faster R-CNN + 4-conv mask head with the Dice loss (SATr config) (... , mask)",
               [](const Config& c) { return std::make_shared<TwoStageDetector>(TwoStageOptions::from(c, true)); });

}  // namespace
}  // namespace facet::models::detection
