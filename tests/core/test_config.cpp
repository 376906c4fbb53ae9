#include "core/config.h"
#include "core/file_io.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>

namespace facet {
namespace {

using ::testing::HasSubstr;
const std::string kDir = FACET_SOURCE_DIR "/tests/fixtures/config/";

// The message of the facet::Error that `f` throws ("" if none).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Config, BaseInheritanceMergesDeeplyAndReplacesLists) {
  const auto c = Config::load(kDir + "sub/child.yaml");
  EXPECT_EQ(c.get<int>("seed"), 1);                       // from base.yaml
  EXPECT_DOUBLE_EQ(c.get<double>("train.lr"), 0.1);       // from base.yaml
  EXPECT_EQ(c.get<int>("train.warmup"), 5);               // from schedule.yaml
  EXPECT_EQ(c.get<std::vector<int>>("train.milestones"), std::vector<int>{30});  // replaced, not appended
  EXPECT_EQ(c.get<int>("model.depth"), 18);               // the file on top
  EXPECT_EQ(c.get<int>("model.head.classes"), 12);        // deep merge...
  EXPECT_DOUBLE_EQ(c.get<double>("model.head.dropout"), 0.5);  // ...keeps siblings
  EXPECT_FALSE(c.has("_base_"));
  EXPECT_EQ(c.get<std::string>("name"), "0123");          // quoted: a string
  EXPECT_THAT(c.where("model.depth"), HasSubstr("sub/child.yaml:3"));
  EXPECT_THAT(c.where("train.lr"), HasSubstr("base.yaml:4"));
}

TEST(Config, BaseCycleIsAnErrorNamingTheChain) {
  const auto message = error_of([] { Config::load(kDir + "cycle_a.yaml"); });
  EXPECT_THAT(message, HasSubstr("_base_ cycle"));
  EXPECT_THAT(message, HasSubstr("cycle_a.yaml -> "));
  EXPECT_THAT(message, HasSubstr("cycle_b.yaml"));
}

TEST(Config, MissingBaseAndFileAreErrors) {
  EXPECT_THAT(error_of([] { Config::load(kDir + "nope.yaml"); }), HasSubstr("nope.yaml: no such config file"));
  const auto dir = std::filesystem::temp_directory_path() / ("facet_cfg_" + std::to_string(::getpid()));
  write_file_atomic(dir / "x.yaml", "_base_: missing.yaml\n");
  EXPECT_THAT(error_of([&] { Config::load(dir / "x.yaml"); }), HasSubstr("missing.yaml: no such config file (named in _base_ of"));
}

TEST(Config, OverridesInferTypes) {
  const auto c = Config::load(kDir + "base.yaml", {"train.lr=1e-4", "data.folds=[1,2]", "model.satr.enabled=false",
                                                   "name=foo", "model.head={dropout: 0.1}"});
  EXPECT_DOUBLE_EQ(c.get<double>("train.lr"), 1e-4);
  EXPECT_EQ(c.get<std::vector<int64_t>>("data.folds"), (std::vector<int64_t>{1, 2}));
  EXPECT_FALSE(c.get<bool>("model.satr.enabled"));
  EXPECT_EQ(c.get<std::string>("name"), "foo");
  EXPECT_DOUBLE_EQ(c.get<double>("model.head.dropout"), 0.1);
  EXPECT_FALSE(c.has("model.head.classes")) << "a map override replaces the map";
  EXPECT_EQ(c.where("train.lr"), "command line (train.lr=1e-4)");
}

TEST(Config, MalformedOverridesAreErrors) {
  EXPECT_THAT(error_of([] { Config::load(kDir + "base.yaml", {"train.lr"}); }),
              HasSubstr("override \"train.lr\" is not of the form dotted.key=value"));
  EXPECT_THAT(error_of([] { Config::load(kDir + "base.yaml", {"train.lr=[1,"}); }), HasSubstr("is not valid YAML"));
  EXPECT_THAT(error_of([] { Config::load(kDir + "base.yaml", {"train.lr.x=1"}); }), HasSubstr("train.lr is a scalar, not a map"));
}

TEST(Config, TypedGettersNameFileLineKeyExpectedAndFound) {
  const auto c = Config::load(kDir + "typed.yaml");
  EXPECT_THAT(error_of([&] { c.get<int>("model.num_aus"); }),
              HasSubstr("typed.yaml:2: model.num_aus: expected an integer, got \"twelve\""));
  EXPECT_THAT(error_of([&] { c.get<int>("model.ratio"); }), HasSubstr("model.ratio: expected an integer, got \"1.5\""));
  EXPECT_THAT(error_of([&] { c.get<bool>("model.ok"); }),
              HasSubstr("model.ok: expected a boolean (true or false), got \"yes\""));
  EXPECT_THAT(error_of([&] { c.get<int>("model.big"); }), HasSubstr("model.big: 99999999999 is out of range"));
  EXPECT_EQ(c.get<int64_t>("model.big"), 99999999999);
  EXPECT_THAT(error_of([&] { c.get<std::vector<int>>("model.list"); }),
              HasSubstr("typed.yaml:6: model.list[2]: expected an integer, got \"x\""));
  EXPECT_THAT(error_of([&] { c.get<int>("model.depth"); }), HasSubstr("typed.yaml: model.depth: required key is missing"));
  EXPECT_THAT(error_of([&] { c.get<double>("model"); }), HasSubstr("model: expected a number, got a map"));
  EXPECT_EQ(c.get<int>("model.depth", 7), 7);
  EXPECT_THAT(error_of([&] { c.get<int>("model.num_aus", 3); }), HasSubstr("expected an integer")) << "a present bad value is not replaced by the fallback";
}

TEST(Config, YamlSyntaxErrorsNameFileLineColumn) {
  EXPECT_THAT(error_of([] { Config::parse("a: [1, 2\nb: 3\n", "bad.yaml"); }), HasSubstr("bad.yaml:"));
  EXPECT_THAT(error_of([] { Config::parse("a: 1\na: 2\n", "dup.yaml"); }), HasSubstr("dup.yaml:2: duplicate key \"a\""));
}

TEST(Config, ViewsCarryTheirPrefixIntoErrors) {
  const auto c = Config::parse("model:\n  backbone:\n    depth: x\n  heads:\n    - {name: au}\n    - {name: expr, w: 2}\n",
                               "m.yaml");
  const Config backbone = c.at("model").at("backbone");
  EXPECT_EQ(backbone.prefix(), "model.backbone");
  EXPECT_THAT(error_of([&] { backbone.get<int>("depth"); }), HasSubstr("m.yaml:3: model.backbone.depth: expected an integer"));
  const Config heads = c.at("model.heads");
  ASSERT_TRUE(heads.is_list());
  ASSERT_EQ(heads.size(), 2u);
  EXPECT_EQ(heads.at(1).prefix(), "model.heads[1]");
  EXPECT_EQ(heads.at(1).get<int>("w"), 2);
  EXPECT_THAT(error_of([&] { heads.at(0).get<int>("w"); }), HasSubstr("model.heads[0].w: required key is missing"));
  EXPECT_THAT(error_of([&] { heads.at(5); }), HasSubstr("model.heads: index 5 out of range"));
  EXPECT_EQ(c.at("model").keys(), (std::vector<std::string>{"backbone", "heads"}));
}

TEST(Config, UnreadKeysAreErrorsWithTheNearestKnownKey) {
  const auto c = Config::parse("train:\n  lr: 0.1\n  max_step: 10\nmodel:\n  name: x\n  extra: {a: 1}\n", "exp.yaml");
  c.get<double>("train.lr");
  c.get<int>("train.max_steps", 100);  // the key code knows (absent here)
  c.get<std::string>("model.name");
  const auto message = error_of([&] { c.check_unused(); });
  EXPECT_THAT(message, HasSubstr("exp.yaml:3: train.max_step: unknown key (nothing reads it); did you mean train.max_steps?"));
  EXPECT_THAT(message, HasSubstr("model.extra.a: unknown key"));
  c.consume("model.extra");
  EXPECT_THAT(error_of([&] { c.check_unused(); }), ::testing::Not(HasSubstr("model.extra")));
  c.get<int>("train.max_step");
  EXPECT_EQ(error_of([&] { c.check_unused(); }), "");
}

TEST(Config, ListsOfMapsAreCheckedElementByElement) {
  const auto c = Config::parse("metrics:\n  - {name: f1, threshold: 0.5}\n  - {name: auc}\n");
  const Config list = c.at("metrics");
  for (size_t i = 0; i < list.size(); ++i) list.at(i).get<std::string>("name");
  EXPECT_THAT(error_of([&] { c.check_unused(); }), HasSubstr("metrics[0].threshold: unknown key"));
}

TEST(Config, DumpReloadsToTheSameValues) {
  auto c = Config::load(kDir + "sub/child.yaml", {"train.lr=1e-4", "tag='true'", "ratio=.5", "n=~"});
  const auto again = Config::parse(c.dump(), "dump.yaml");
  EXPECT_DOUBLE_EQ(again.get<double>("train.lr"), 1e-4);
  EXPECT_EQ(again.get<std::string>("tag"), "true");
  EXPECT_THAT(error_of([&] { again.get<bool>("tag"); }), HasSubstr("expected a boolean")) << "a quoted \"true\" stays a string";
  EXPECT_EQ(again.get<std::string>("name"), "0123");
  EXPECT_EQ(again.get<std::string>("enabled"), "true");
  EXPECT_DOUBLE_EQ(again.get<double>("ratio"), 0.5);
  EXPECT_FALSE(again.has("n"));
  EXPECT_EQ(again.get<std::vector<int>>("train.milestones"), std::vector<int>{30});
  EXPECT_EQ(again.dump(), c.dump());
  EXPECT_EQ(c.at("train.milestones").dump_inline(), "[30]");
  const auto file = std::filesystem::temp_directory_path() / ("facet_cfg_dump_" + std::to_string(::getpid()) + ".yaml");
  c.save(file);
  EXPECT_EQ(Config::load(file).dump(), c.dump());
}

TEST(Config, SpecialFloats) {
  const auto c = Config::parse("a: .inf\nb: -.inf\nc: .nan\nd: 1.5e3\ne: -2\n");
  EXPECT_TRUE(std::isinf(c.get<double>("a")) && c.get<double>("a") > 0);
  EXPECT_TRUE(std::isinf(c.get<double>("b")) && c.get<double>("b") < 0);
  EXPECT_TRUE(std::isnan(c.get<double>("c")));
  EXPECT_DOUBLE_EQ(c.get<double>("d"), 1500.0);
  EXPECT_EQ(c.get<int>("e"), -2);
  EXPECT_DOUBLE_EQ(c.get<double>("e"), -2.0);
}

}  // namespace
}  // namespace facet
