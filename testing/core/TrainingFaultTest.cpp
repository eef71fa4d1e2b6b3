// Training faults: non-finite losses and gradients, divergence, cancellation,
// and operator files that must survive all of them (a failed training never
// replaces a good file, never writes NaN weights, never leaves a .partial).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "../support/FileBytes.h"
#include "numerics/Errors.h"
#include "operator/LearnToEvolveTrainer.h"
#include "operator/LearnedOperator.h"
#include "operator/OperatorFile.h"
#include "operator/VelocityNetwork.h"
#include "runtime/Runtime.h"

namespace jko {
namespace {

namespace fs = std::filesystem;

std::string temporaryPath(const std::string& name) {
  return (fs::temp_directory_path() / ("jko_fault_" + std::to_string(::getpid()) + "_" + name)).string();
}

using jko::testsupport::readBytes;
using jko::testsupport::writeBytes;

// Two rounds of 4 optimiser steps (2 epochs of ceil(8 / 4) steps) on 16^2.
TrainingOptions tinyTraining() {
  TrainingOptions o = TrainingOptions::defaultsFor(EnergySpec::porousMedium(2, 1), 2);
  o.grid = 16;
  o.rounds = 2;
  o.epochs = 2;
  o.batch = 4;
  o.generated = 8;
  o.validation = 1;
  o.horizon = 2;
  o.seed = 17;
  o.network.width = 4;
  o.network.modes = 4;
  o.network.layers = 1;
  o.network.hidden = 8;
  return o;
}
constexpr int64_t kStepsPerRound = 4;

at::Tensor nanLoss(const at::Tensor& loss) { return loss * std::nan(""); }

// A finite loss whose gradient is NaN: d sqrt(z)/dz is infinite at z = 0,
// and 0 * inf = NaN flows back into every parameter.
at::Tensor nanGradient(const at::Tensor& loss) { return loss + 0.0 * at::sqrt(loss - loss); }

bool allParametersFinite(const LearnedOperator& op) {
  for (const auto& entry : op.network().namedParameters())
    if (!at::isfinite(entry.second).all().item<bool>()) return false;
  return true;
}

// Runs training, copying the checkpoint as it was at the end of round 1.
struct RunWithSnapshot {
  std::string roundOneCheckpoint;
  std::vector<std::string> messages;
  ProgressCallback callback(const std::string& checkpoint) {
    return [this, checkpoint](const ProgressEvent& e) {
      messages.push_back(e.message);
      if (e.message.find("round 1/2 done") != std::string::npos) roundOneCheckpoint = readBytes(checkpoint);
      return true;
    };
  }
};

TEST(TrainingFaults, SkippedStepsLeaveParametersAndAdamStateUnchanged) {
  configureRuntime(2);
  TrainingOptions o = tinyTraining();
  o.checkpoint = temporaryPath("skip.ckpt");
  o.maxNonFiniteSteps = 100;  // let the whole of round 2 be skipped
  o.lossHookForTesting = [](int64_t step, const at::Tensor& loss) {
    return step >= kStepsPerRound ? nanLoss(loss) : loss;
  };
  RunWithSnapshot run;
  const TrainingResult result = LearnToEvolveTrainer(o).train(run.callback(o.checkpoint));
  ASSERT_FALSE(run.roundOneCheckpoint.empty());

  // Round 2 made no update: parameters and every Adam moment and step count
  // are those after round 1, bit for bit.
  writeBytes(o.checkpoint + ".round1", run.roundOneCheckpoint);
  const OperatorArchive before = readOperatorArchive(o.checkpoint + ".round1");
  const OperatorArchive after = readOperatorArchive(o.checkpoint);
  int compared = 0;
  for (const auto& [name, tensor] : before.tensors) {
    if (name.rfind("dataset.", 0) == 0) continue;  // round 1's rollout frames joined the set
    for (const auto& [otherName, other] : after.tensors)
      if (otherName == name) {
        EXPECT_TRUE(at::equal(tensor, other)) << name;
        ++compared;
      }
  }
  EXPECT_GT(compared, 3 * 4);  // parameters, best copies and Adam's moments of several tensors

  const nlohmann::json& summary = result.summary;
  EXPECT_EQ(summary["nonfinite_steps"].get<int64_t>(), kStepsPerRound);
  EXPECT_DOUBLE_EQ(summary["learning_rate_factor"].get<double>(), std::pow(0.5, kStepsPerRound));
  EXPECT_EQ(summary["per_round"][0]["nonfinite_steps"].get<int64_t>(), 0);
  EXPECT_EQ(summary["per_round"][1]["nonfinite_steps"].get<int64_t>(), kStepsPerRound);
  EXPECT_TRUE(summary["per_round"][1]["loss"].is_null());
  EXPECT_TRUE(allParametersFinite(*result.op));
  bool reported = false;
  for (const std::string& m : run.messages)
    reported = reported || (m.find("non-finite loss, step skipped, learning rate lowered") != std::string::npos);
  EXPECT_TRUE(reported);
  fs::remove(o.checkpoint);
  fs::remove(o.checkpoint + ".round1");
}

TEST(TrainingFaults, NonFiniteGradientWithFiniteLossIsSkippedToo) {
  configureRuntime(2);
  TrainingOptions o = tinyTraining();
  o.rounds = 1;
  o.lossHookForTesting = [](int64_t step, const at::Tensor& loss) { return step == 1 ? nanGradient(loss) : loss; };
  std::vector<std::string> messages;
  const TrainingResult result = LearnToEvolveTrainer(o).train([&](const ProgressEvent& e) {
    messages.push_back(e.message);
    return true;
  });
  EXPECT_EQ(result.summary["nonfinite_steps"].get<int64_t>(), 1);
  EXPECT_DOUBLE_EQ(result.summary["learning_rate_factor"].get<double>(), 0.5);
  EXPECT_TRUE(allParametersFinite(*result.op));
  bool reported = false;
  for (const std::string& m : messages) reported = reported || m.find("non-finite gradient") != std::string::npos;
  EXPECT_TRUE(reported);
}

TEST(TrainingFaults, DivergenceStopsWithAClearErrorAndKeepsTheBestFiniteCheckpoint) {
  configureRuntime(2);
  TrainingOptions o = tinyTraining();
  o.checkpoint = temporaryPath("diverge.ckpt");
  o.maxNonFiniteSteps = 3;
  o.lossHookForTesting = [](int64_t step, const at::Tensor& loss) {
    return step >= kStepsPerRound ? nanLoss(loss) : loss;
  };
  RunWithSnapshot run;
  try {
    LearnToEvolveTrainer(o).train(run.callback(o.checkpoint));
    FAIL() << "expected TrainingDiverged";
  } catch (const TrainingDiverged& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("3 optimiser steps in a row gave a non-finite loss or gradient"), std::string::npos) << what;
    EXPECT_NE(what.find(o.checkpoint), std::string::npos) << what;
    EXPECT_NE(what.find("resume from it"), std::string::npos) << what;
    EXPECT_NE(what.find("lower learning rate"), std::string::npos) << what;
    EXPECT_TRUE(e.summary()["stopped_non_finite"].get<bool>());
    EXPECT_EQ(e.summary()["nonfinite_steps"].get<int64_t>(), 3);
    ASSERT_TRUE(e.bestOperator());
    EXPECT_TRUE(allParametersFinite(*e.bestOperator()));
  }
  // The checkpoint is round 1's, untouched, finite, and nothing half-written is left.
  EXPECT_EQ(readBytes(o.checkpoint), run.roundOneCheckpoint);
  EXPECT_FALSE(fs::exists(o.checkpoint + ".partial"));
  for (const auto& [name, tensor] : readOperatorArchive(o.checkpoint).tensors)
    if (tensor.is_floating_point()) EXPECT_TRUE(at::isfinite(tensor).all().item<bool>()) << name;
  fs::remove(o.checkpoint);
}

TEST(TrainingFaults, ResumeCarriesTheLoweredLearningRate) {
  configureRuntime(2);
  TrainingOptions o = tinyTraining();
  o.lossHookForTesting = [](int64_t step, const at::Tensor& loss) { return step == 1 ? nanLoss(loss) : loss; };
  const TrainingResult straight = LearnToEvolveTrainer(o).train();
  o.checkpoint = temporaryPath("resume.ckpt");
  EXPECT_THROW(LearnToEvolveTrainer(o).train(
                   [](const ProgressEvent& e) { return e.message.find("round 1/2 done") == std::string::npos; }),
               Cancelled);
  TrainingOptions resumed = o;
  resumed.resume = true;
  const TrainingResult result = LearnToEvolveTrainer(resumed).train();
  EXPECT_EQ(result.summary["nonfinite_steps"].get<int64_t>(), 1);
  EXPECT_DOUBLE_EQ(result.summary["learning_rate_factor"].get<double>(), 0.5);
  const auto& a = straight.op->network().namedParameters();
  const auto& b = result.op->network().namedParameters();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(at::equal(a[i].second, b[i].second)) << a[i].first;
  fs::remove(o.checkpoint);
}

TEST(TrainingFaults, CancellingBeforeARoundEndsWritesNothing) {
  configureRuntime(2);
  TrainingOptions o = tinyTraining();
  o.checkpoint = temporaryPath("cancel.ckpt");
  writeBytes(o.checkpoint, "an earlier checkpoint");
  int events = 0;
  EXPECT_THROW(LearnToEvolveTrainer(o).train([&](const ProgressEvent& e) { return ++events < 3; }), Cancelled);
  EXPECT_EQ(readBytes(o.checkpoint), "an earlier checkpoint");
  EXPECT_FALSE(fs::exists(o.checkpoint + ".partial"));
  fs::remove(o.checkpoint);
}

std::shared_ptr<LearnedOperator> untrainedOperator() {
  OperatorMetadata metadata;
  metadata.energy = EnergySpec::porousMedium(2, 1);
  metadata.network.width = 4;
  metadata.network.modes = 4;
  metadata.network.layers = 1;
  metadata.network.hidden = 8;
  auto network = VelocityNetwork::create(metadata.network, 2, LearnedOperator::inputChannels(metadata),
                                         LearnedOperator::outputChannels(metadata), 1);
  return std::make_shared<LearnedOperator>(metadata, network);
}

TEST(OperatorFiles, SavingNonFiniteParametersIsRefusedAndTheOldFileKept) {
  auto op = untrainedOperator();
  const std::string path = temporaryPath("good.jko");
  op->save(path);
  const std::string good = readBytes(path);
  {
    at::NoGradGuard noGrad;
    op->network().namedParameters().back().second.view({-1})[0] = std::nan("");
  }
  try {
    op->save(path);
    FAIL() << "expected OperatorFileError";
  } catch (const OperatorFileError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("NaN or infinite"), std::string::npos) << what;
    EXPECT_NE(what.find(op->network().namedParameters().back().first), std::string::npos) << what;
  }
  EXPECT_EQ(readBytes(path), good);
  EXPECT_FALSE(fs::exists(path + ".partial"));
  fs::remove(path);
}

TEST(OperatorFiles, SavingOverAFileOrIntoAMissingFolderLeavesNoPartial) {
  auto op = untrainedOperator();
  const std::string path = temporaryPath("twice.jko");
  writeBytes(path, "an older operator");
  op->save(path);
  EXPECT_NE(readBytes(path), "an older operator");
  EXPECT_NO_THROW(LearnedOperator::load(path));
  EXPECT_FALSE(fs::exists(path + ".partial"));
  const std::string missing = temporaryPath("no-such-folder") + "/op.jko";
  EXPECT_THROW(op->save(missing), OperatorFileError);
  EXPECT_FALSE(fs::exists(missing + ".partial"));
  fs::remove(path);
}

}  // namespace
}  // namespace jko
