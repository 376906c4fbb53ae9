// train.init_weights: a new run's model starts from other weights by name (prefix map, ignore
// patterns), strict about what the file covers.
#include "core/config.h"
#include "core/safetensors.h"
#include "models/backbones/resnet.h"
#include "models/model.h"
#include "models/weights/init_weights.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace facet::train::test_init_weights {
using models::init_weights;
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

TEST(InitWeights, LoadsABackboneUnderAPrefixAndIgnoresItsHead) {
  const fs::path dir = fs::temp_directory_path() / ("facet_init_weights_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  models::ResNetOptions o;
  o.depth = 18;
  o.num_classes = 1000;
  models::ResNet imagenet(o);  // a "torchvision" file: conv1.weight, ..., fc.weight
  safetensors::save(dir / "resnet18.safetensors", safetensors::state_dict(*imagenet));
  // The registered classifier keeps its ResNet under "net." and has 7 classes.
  auto model = models::model_registry().create(Config::parse("{name: resnet, depth: 18, num_classes: 7}"));
  const auto list = Config::parse(fmt::format("init_weights: [{{path: {}, add_prefix: net., ignore: ['^fc\\.']}}]", (dir / "resnet18.safetensors").string()), "c.yaml").at("init_weights");
  init_weights(*model, list);
  const auto loaded = safetensors::state_dict(*model);
  EXPECT_TRUE(torch::equal(loaded.at("net.layer3.1.conv2.weight"), imagenet->layer3[1]->as<models::BasicBlock>()->conv2->weight));
  EXPECT_EQ(loaded.at("net.fc.weight").size(0), 7);  // the head keeps its own initialisation
  // Without ignoring fc, the 1000-class head does not fit the 7-class one.
  const auto bad = Config::parse(fmt::format("init_weights: [{{path: {}, add_prefix: net.}}]", (dir / "resnet18.safetensors").string()), "c.yaml").at("init_weights");
  try {
    init_weights(*model, bad);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("c.yaml:1:"));
    EXPECT_THAT(e.what(), HasSubstr("net.fc.weight"));
  }
}

}  // namespace
}  // namespace facet::train::test_init_weights
