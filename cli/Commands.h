// Sub-commands of the `jko` command-line tool.
#pragma once

#include <CLI/CLI.hpp>

namespace jko::cli {

/// --gauss-newton of rollout, eval and compare.
inline constexpr const char* kGaussNewtonHelp =
    "Gauss-Newton corrections of each step: the learned operator's (default: its file's) and the linearized "
    "solver's (default 0)";

void addEvalCommand(CLI::App& app);
void addCompareCommand(CLI::App& app);
void addRolloutCommand(CLI::App& app);
void addTrainCommand(CLI::App& app);
void addBenchCommand(CLI::App& app);
void addConfigureCommand(CLI::App& app);

}  // namespace jko::cli
