#include "train/init_weights.h"

#include "core/log.h"
#include "core/safetensors.h"
#include "core/text.h"
#include "models/backbones/vit.h"

#include <algorithm>
#include <regex>

namespace facet::train {

void init_weights(torch::nn::Module& model, const Config& list) {
  if (!list.is_list()) fail("{}: {}: expected a list of {{path, ...}} entries", list.where(), list.prefix());
  for (size_t i = 0; i < list.size(); ++i) {
    const Config e = list.at(i);
    const std::string path = e.get<std::string>("path");
    const std::string add = e.get<std::string>("add_prefix", ""), strip = e.get<std::string>("strip_prefix", "");
    const std::string convert = e.get<std::string>("convert", "none");
    const bool strict = e.get<bool>("strict", true);
    if (convert != "none" && convert != "hf_vit")
      fail("{}: {}: expected none or hf_vit, got \"{}\"", e.where("convert"), e.full_key("convert"), convert);
    safetensors::TensorMap tensors = safetensors::load(path);
    if (convert == "hf_vit") tensors = models::convert_hf_vit(tensors);
    safetensors::NameMap names;
    names.ignore = e.get<std::vector<std::string>>("ignore", {});
    names.prefixes = {{strip, add}};
    // Strict about the file, and about the part of the model under add_prefix (a backbone file
    // need not cover the heads) that the ignore patterns do not leave out on purpose.
    const auto report = safetensors::load_into(model, tensors, names, /*strict=*/false, path);
    std::vector<std::string> missing;
    for (const auto& name : report.missing) {
      if (name.rfind(add, 0) != 0) continue;
      const std::string in_file = strip + name.substr(add.size());
      const bool ignored = std::any_of(names.ignore.begin(), names.ignore.end(),
                                       [&](const std::string& p) { return std::regex_search(in_file, std::regex(p)); });
      if (!ignored) missing.push_back(name);
    }
    if (strict && (!missing.empty() || !report.unexpected.empty() || !report.mismatched.empty())) {
      safetensors::LoadReport shown = report;
      shown.missing = missing;
      fail("{}: {}: {}", e.where("path"), path, shown.summary());
    }
    if (!report.mismatched.empty()) fail("{}: {}: shapes disagree: {}", e.where("path"), path, join(report.mismatched));
    log::info("init_weights: {} tensors from {}{}", report.loaded.size(), path,
              report.missing.empty() ? "" : fmt::format(" ({} model tensors keep their initialisation)", report.missing.size()));
  }
}

}  // namespace facet::train
