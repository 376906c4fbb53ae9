// tools/convert_pickle_to_safetensors.py: a nested MiniGPT-v2-style .pth ({"model": ..., "epoch": ...})
// converted with names preserved into shards that Facet's safetensors reader loads.
#include "core/safetensors.h"
#include "../support/scratch.h"
#include "tests/support/paths.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

namespace facet::test_convert {

namespace fs = std::filesystem;

namespace {

TEST(ConvertPickle, NestedCheckpointToShardedSafetensors) {
  const auto dir = test_support::scratch_dir("llm", "convert");
  const std::string make = std::string(facet::test_support::kPython) + " -c \"import torch; e = torch.arange(12.).reshape(3, 4); "
                           "torch.save({'model': {'llama_proj.weight': torch.arange(6.).reshape(2, 3), 'emb': e, 'head': e, "
                           "'lora': {'A': torch.ones(2, dtype=torch.bfloat16)}}, 'epoch': 3, 'optimizer': {'step': 1}}, '" +
                           (dir / "checkpoint_stage3.pth").string() + "'); torch.save({'a': {'x': torch.ones(1)}, 'b': {'y': torch.ones(1)}}, '" +
                           (dir / "bad.pth").string() + "')\"";
  ASSERT_EQ(std::system(make.c_str()), 0) << make;
  const std::string convert = std::string(facet::test_support::kPython) + " " + facet::test_support::source_path("tools/convert_pickle_to_safetensors.py") + " " +
                              (dir / "checkpoint_stage3.pth").string() + " " + (dir / "out").string() + " --max-shard-size 50B";
  ASSERT_EQ(std::system(convert.c_str()), 0) << convert;
  EXPECT_TRUE(fs::exists(dir / "out" / "model.safetensors.index.json"));
  const auto t = safetensors::load(dir / "out");
  ASSERT_EQ(t.size(), 4U);
  EXPECT_TRUE(torch::equal(t.at("llama_proj.weight"), torch::arange(6.0).reshape({2, 3})));
  EXPECT_TRUE(torch::equal(t.at("emb"), torch::arange(12.0).reshape({3, 4})));
  EXPECT_TRUE(torch::equal(t.at("head"), t.at("emb")));  // tied storage written twice
  EXPECT_EQ(t.at("lora.A").scalar_type(), torch::kBFloat16);
  // A file without tensors at the top and no wrapper: the error asks for --key.
  const std::string bad = std::string(facet::test_support::kPython) + " " + facet::test_support::source_path("tools/convert_pickle_to_safetensors.py") + " " + (dir / "bad.pth").string() + " " +
                          (dir / "bad") .string() + " 2>&1 | grep -q 'choose one with --key'";
  EXPECT_EQ(std::system(bad.c_str()), 0) << bad;
}

}  // namespace

}  // namespace facet::test_convert
