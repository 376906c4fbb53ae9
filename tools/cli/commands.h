// The `facet` command-line tool: each subcommand lives in its own file and adds itself to the app.
#pragma once

#include <CLI/CLI.hpp>

namespace facet::cli {

void add_info_command(CLI::App& app);
void add_list_command(CLI::App& app);
void add_inspect_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_sweep_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_summary_command(CLI::App& app);
void add_launch_command(CLI::App& app);
void add_data_command(CLI::App& app);
void add_predict_command(CLI::App& app);
void add_generate_command(CLI::App& app);

}  // namespace facet::cli
