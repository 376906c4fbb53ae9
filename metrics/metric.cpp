#include "metrics/metric.h"

namespace facet::metrics {

MetricRegistry& metric_registry() {
  static MetricRegistry registry("metric", "metrics");
  return registry;
}

}  // namespace facet::metrics
