// Custom Diffusion and DETEX trained end to end by the Trainer at test size
// (experiments/generative/tiny/): only the selected parameters train (optim.params freezes the rest),
// evaluation draws the prompts' samples, DETEX logs its mapper penalty, and a resumed run continues;
// SMILE resumes exactly.
#include "core/file_io.h"
#include "core/safetensors.h"
#include "data/synth.h"
#include "models/generative/detex.h"
#include "tests/support/paths.h"
#include "tests/support/scratch.h"
#include "train/trainer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace facet::test_generative_runs {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

fs::path source(const std::string& relative) { return fs::path(facet::test_support::kSourceDir) / relative; }

// A synthetic concept folder (images + masks/), written once per test.
fs::path concept_data(const std::string& name) {
  const fs::path root = test_support::scratch_path("facet_generative", name + "_data");
  data::synth_registry().create(Config::parse("name: concept\nimages: 8\nsize: 32\n"), root);
  return root;
}

Config tiny(const std::string& file, const fs::path& data_root, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> overrides{"data.root=" + data_root.string(),
                                     "model.tokenizer=" + source("tests/fixtures/generative/clip_tokenizer").string()};
  overrides.insert(overrides.end(), extra.begin(), extra.end());
  return Config::load(source("experiments/generative/tiny/" + file), overrides);
}

int64_t trainable(torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters())
    if (p.requires_grad()) n += p.numel();
  return n;
}

}  // namespace

TEST(GenerativeRuns, CustomDiffusionTrainsOnlyCrossAttentionKVAndTheNewWord) {
  const fs::path data_root = concept_data("cd");
  const fs::path run = test_support::scratch_path("facet_generative", "cd_run");
  train::Trainer t(tiny("custom_diffusion.yaml", data_root), run);
  // Every cross-attention site's K and V, counted from the model, and the new word:
  int64_t kv = 0;
  for (const auto& p : t.model().named_parameters())
    if (p.key().find("attn2.to_k") != std::string::npos || p.key().find("attn2.to_v") != std::string::npos) kv += p.value().numel();
  EXPECT_EQ(trainable(t.model()), kv + 24) << "K/V + one 24-wide word";
  t.fit();
  EXPECT_EQ(t.state().step, 30);
  // Evaluation generated the validation prompts' samples and drew them with their prompts.
  EXPECT_TRUE(fs::exists(run / "visuals" / "val_samples_step30.png"));
}

// The step trains with the model's schedule (the one it samples with); a step key that contradicts
// it is an error naming the key, and LoRA on the UNet's cross-attention trains through the same path.
TEST(GenerativeRuns, StepKeysMustAgreeWithTheModelsScheduleAndLoraTrains) {
  const fs::path data_root = concept_data("schedule");
  try {
    train::Trainer t(tiny("custom_diffusion.yaml", data_root, {"step.beta_end=0.02"}), test_support::scratch_path("facet_generative", "x"));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("step.beta_end: 0.02 disagrees with the model's noise schedule (0.012)"));
  }
  const fs::path run = test_support::scratch_path("facet_generative", "lora_run");
  train::Trainer t(tiny("custom_diffusion.yaml", data_root,
                        {"model.adapters=[{name: lora, targets: ['unet.**.attn2.to_k', 'unet.**.attn2.to_v'], rank: 2, alpha: 2}]",
                         "optim.params=['*lora_*']", "train.max_steps=4", "train.eval_every=0"}),
                   run);
  int64_t lora = 0;
  for (const auto& p : t.model().named_parameters())
    if (p.value().requires_grad()) {
      EXPECT_THAT(p.key(), HasSubstr("lora_")) << "only the LoRA factors train";
      lora += p.value().numel();
    }
  EXPECT_GT(lora, 0);
  t.fit();
  EXPECT_EQ(t.state().step, 4);
}

TEST(GenerativeRuns, DetexTrainsMappersWordAndKVAndResumes) {
  const fs::path data_root = concept_data("detex");
  const fs::path run = test_support::scratch_path("facet_generative", "detex_run");
  {
    train::Trainer t(tiny("detex.yaml", data_root, {"train.max_steps=10", "train.eval_every=0"}), run);
    auto& detex = dynamic_cast<models::generative::Detex&>(t.model());
    EXPECT_EQ(trainable(*detex.image_encoder), 0);
    EXPECT_EQ(trainable(*detex.text_encoder), 0);
    EXPECT_EQ(trainable(*detex.vae), 0);
    EXPECT_GT(trainable(*detex.mappers), 0);
    EXPECT_TRUE(detex.new_token_embeddings.requires_grad());
    t.fit();
  }
  const std::string metrics = read_file(run / "metrics.csv");
  EXPECT_THAT(metrics, HasSubstr("train/mapper_l1"));
  train::Trainer resumed(Config::load(run / "config.yaml", {"train.max_steps=14"}), run, train::Mode::resume);
  resumed.fit();
  EXPECT_EQ(resumed.state().step, 14);
}

// SMILE on synthetic BraTS: a run stopped after 4 steps and resumed to 8 ends with the same weights,
// byte for byte, as one that ran 8 — the pseudo masks start after 6 generator batches, between the
// two, so the step counter must come back with the checkpoint.
TEST(GenerativeRuns, SmileResumesExactlyAcrossThePseudoMaskStart) {
  const fs::path data_root = test_support::scratch_path("facet_generative", "smile_data");
  data::synth_registry().create(Config::parse("name: brats\ncases: 6\nsize: 32\nslices: 16\n"), data_root);
  auto config = [&](int64_t steps) {
    return Config::load(source("experiments/generative/tiny/smile.yaml"),
                        {"data.root=" + data_root.string(), "model.pseudo_masks.after_steps=6", "train.eval_every=0",
                         "train.checkpoint_every=4", "train.max_steps=" + std::to_string(steps)});
  };
  const fs::path straight = test_support::scratch_path("facet_generative", "smile_straight");
  const fs::path broken = test_support::scratch_path("facet_generative", "smile_broken");
  train::Trainer(config(8), straight).fit();
  train::Trainer(config(4), broken).fit();
  train::Trainer resumed(config(8), broken, train::Mode::resume);
  resumed.fit();
  EXPECT_EQ(resumed.state().step, 8);
  const std::string a = read_file(straight / "checkpoints/last/model.safetensors");
  EXPECT_EQ(a, read_file(broken / "checkpoints/last/model.safetensors"));
  EXPECT_EQ(safetensors::load(straight / "checkpoints/last/model.safetensors").at("generator_steps").item<int64_t>(), 8);
}

}  // namespace facet::test_generative_runs
