// `facet` — one binary that inspects, trains, evaluates and sweeps every Facet model family.
#include "core/error.h"
#include "core/log.h"
#include "tools/cli/commands.h"

#include <facet_version.h>

#include <cstdio>

int main(int argc, char** argv) {
  CLI::App app{"Facet — a native C++ (LibTorch) training and research framework for medical imaging and "
               "face analysis.\nRun `facet COMMAND --help` for the options of a command.",
               "facet"};
  app.set_version_flag("--version", std::string("facet ") + FACET_VERSION + " (" + FACET_GIT_REVISION + ")");
  app.require_subcommand(1);
  app.failure_message(CLI::FailureMessage::help);
  std::string log_level;
  app.add_option("--log-level", log_level, "debug, info, warn, error or off (default: $FACET_LOG_LEVEL or info)");
  app.parse_complete_callback([&] {
    if (!log_level.empty()) facet::log::set_level(facet::log::parse_level(log_level));
  });

  facet::cli::add_info_command(app);
  facet::cli::add_list_command(app);
  facet::cli::add_inspect_command(app);
  facet::cli::add_train_command(app);
  facet::cli::add_eval_command(app);
  facet::cli::add_predict_command(app);
  facet::cli::add_generate_command(app);
  facet::cli::add_sweep_command(app);
  facet::cli::add_summary_command(app);
  facet::cli::add_launch_command(app);
  facet::cli::add_data_command(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const facet::Error& e) {
    std::fprintf(stderr, "facet: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "facet: internal error: %s\n", e.what());
    return 2;
  }
  return 0;
}
