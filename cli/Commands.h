// Sub-commands of the `jko` command-line tool.
#pragma once

#include <CLI/CLI.hpp>

namespace jko::cli {

void addEvalCommand(CLI::App& app);
void addCompareCommand(CLI::App& app);
void addRolloutCommand(CLI::App& app);
void addTrainCommand(CLI::App& app);
void addBenchCommand(CLI::App& app);

}  // namespace jko::cli
