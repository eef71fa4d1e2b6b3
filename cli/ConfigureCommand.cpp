// jko configure: changes what an operator file does at inference without
// touching its network (today: the Gauss-Newton corrections of each step).
#include <iostream>
#include <memory>

#include "Commands.h"
#include "operator/LearnedOperator.h"
#include "operator/OperatorFile.h"
#include "operator/OperatorMetadata.h"

namespace jko::cli {
namespace {

struct ConfigureOptions {
  std::string operatorFile, out;
  int gaussNewton = -1;
};

void configure(const ConfigureOptions& o) {
  OperatorArchive archive = readOperatorArchive(o.operatorFile);
  nlohmann::json& network = archive.metadata.at("network");
  const int before = network.value("gauss_newton", 0);
  if (o.gaussNewton > 0)
    network["gauss_newton"] = o.gaussNewton;
  else
    network.erase("gauss_newton");
  // The changed metadata must still describe a valid operator (the range
  // check names the field); the file records what was changed, after the
  // training that made the network.
  OperatorMetadata::fromJson(archive.metadata).network.validate();
  nlohmann::json& training = archive.metadata["training"];
  if (!training.is_object()) training = nlohmann::json::object();
  if (!training.contains("configured")) training["configured"] = nlohmann::json::array();
  training["configured"].push_back({{"gauss_newton", {before, o.gaussNewton}}});
  const std::string out = o.out.empty() ? o.operatorFile : o.out;
  writeOperatorArchive(out, archive);  // a temporary file, then a rename
  LearnedOperator::load(out);          // what was written loads
  std::cout << out << ": Gauss-Newton corrections " << before << " -> " << o.gaussNewton << "\n";
}

}  // namespace

void addConfigureCommand(CLI::App& app) {
  auto o = std::make_shared<ConfigureOptions>();
  CLI::App* cmd = app.add_subcommand(
      "configure", "Change an operator file's inference settings (its network unchanged): Gauss-Newton corrections");
  cmd->add_option("--operator", o->operatorFile, "Operator file (.jko)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--gauss-newton", o->gaussNewton,
                  "Gauss-Newton corrections of the learned map at every step (0 to 20; 0: none)")
      ->required()
      ->check(CLI::Range(0, 20));
  cmd->add_option("--out", o->out, "Output file (default: the operator file itself, replaced through a rename)");
  cmd->callback([o] { configure(*o); });
}

}  // namespace jko::cli
