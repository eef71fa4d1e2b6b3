// Sub-commands of the `jko` command-line tool.
#pragma once

#include <CLI/CLI.hpp>
#include <exception>
#include <string>

namespace jko::cli {

/// --gauss-newton of rollout, eval and compare.
inline constexpr const char* kGaussNewtonHelp =
    "Gauss-Newton corrections of each step: the learned operator's (default: its file's) and the linearized "
    "solver's (default 0)";

/// --further-newton of rollout, eval and compare.
inline constexpr const char* kFurtherNewtonHelp =
    "Learned operator: take its further corrections (those of frames still flagged after the extra ones) as "
    "Gauss-Newton steps at the map with this many conjugate-gradient iterations each, until certified below 0.001 "
    "(default 0: quasi-Newton)";

/// A whole number of at least `lowest`, with a message that says so (CLI11's
/// PositiveNumber and NonNegativeNumber print the range up to DBL_MAX in full).
inline CLI::Validator atLeast(long long lowest) {
  return CLI::Validator(
      [lowest](std::string& value) -> std::string {
        try {
          size_t used = 0;
          const long long number = std::stoll(value, &used);
          if (used == value.size() && number >= lowest) return {};
        } catch (const std::exception&) {
        }
        return "got '" + value + "', give a whole number >= " + std::to_string(lowest);
      },
      lowest == 1   ? "POSITIVE"
      : lowest == 0 ? "NONNEGATIVE"
                    : ">=" + std::to_string(lowest));
}

void addEvalCommand(CLI::App& app);
void addCompareCommand(CLI::App& app);
void addRolloutCommand(CLI::App& app);
void addTrainCommand(CLI::App& app);
void addBenchCommand(CLI::App& app);
void addConfigureCommand(CLI::App& app);

}  // namespace jko::cli
