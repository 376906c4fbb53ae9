#include "core/registry.h"

#include <gtest/gtest.h>
#include <gmock/gmock.h>

#include <memory>

namespace facet::test_registry {
namespace {

using ::testing::HasSubstr;

struct Shape {
  virtual ~Shape() = default;
  virtual double area() const = 0;
};
struct Square : Shape {
  double side;
  explicit Square(double s) : side(s) {}
  double area() const override { return side * side; }
};
struct Circle : Shape {
  double radius;
  explicit Circle(double r) : radius(r) {}
  double area() const override { return 3.0 * radius * radius; }
};

using ShapeRegistry = Registry<std::unique_ptr<Shape>, double>;
ShapeRegistry& shapes() {
  static ShapeRegistry registry("shape", "test_shapes");
  return registry;
}

FACET_REGISTER(shapes(), "square", "A square of side `side`", [](const Config& c, double scale) {
  return std::unique_ptr<Shape>(new Square(c.get<double>("side") * scale));
});
FACET_REGISTER(shapes(), "circle", "A circle of radius `radius`", [](const Config& c, double scale) {
  return std::unique_ptr<Shape>(new Circle(c.get<double>("radius") * scale));
});

TEST(Registry, CreatesByNameWithConfigAndArguments) {
  auto square = shapes().create(Config::parse("name: square\nside: 3"), 2.0);
  EXPECT_DOUBLE_EQ(square->area(), 36.0);
  auto circle = shapes().create(Config::parse("shape: {name: circle, radius: 1}").at("shape"), 1.0);
  EXPECT_DOUBLE_EQ(circle->area(), 3.0);
}

TEST(Registry, UnknownNameListsRegisteredAndSuggestsNearest) {
  const auto config = Config::parse("model:\n  name: sqare\n  side: 1\n", "exp.yaml");
  try {
    shapes().create(config.at("model"), 1.0);
    FAIL() << "expected facet::Error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_THAT(message, HasSubstr("exp.yaml:2"));
    EXPECT_THAT(message, HasSubstr("model.name: unknown shape \"sqare\""));
    EXPECT_THAT(message, HasSubstr("did you mean \"square\"?"));
    EXPECT_THAT(message, HasSubstr("registered: circle, square"));
  }
}

TEST(Registry, DuplicateNameIsAnError) {
  EXPECT_THROW(
      {
        try {
          shapes().add("square", "again", [](const Config&, double) { return std::unique_ptr<Shape>(); });
        } catch (const Error& e) {
          EXPECT_THAT(e.what(), HasSubstr("duplicate registration of shape \"square\""));
          throw;
        }
      },
      Error);
}

TEST(RegistryDeathTest, DuplicateStaticRegistrationStopsAtStartUp) {
  EXPECT_DEATH(detail::register_or_die(shapes(), "circle", "dup",
                                       [](const Config&, double) { return std::unique_ptr<Shape>(); }),
               "fatal error at start-up: duplicate registration of shape \"circle\"");
}

TEST(Registry, IndexListsEveryKind) {
  bool found = false;
  for (const auto& [kind, components] : RegistryIndex::instance().all()) {
    if (kind != "test_shapes") continue;
    found = true;
    ASSERT_EQ(components.size(), 2u);
    EXPECT_EQ(components[0].name, "circle");
    EXPECT_EQ(components[1].description, "A square of side `side`");
  }
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace facet::test_registry
