// tests/test_checkpoint_fixtures.cpp — checkpoints written by earlier versions of mlvae still load: the files in
// tests/fixtures/checkpoint/ (format version 2, made by make_fixtures.cpp there; version 1 is derived from them)
// are loaded into fresh trainers, and everything they restore is compared with the values recorded when they
// were written (tests/fixtures/checkpoint/expected.txt), then rewritten in today's format and loaded again, and
// training resumes to the recorded parameters.
#include <doctest/doctest.h>

#include "support.hpp"
#include "fixtures/checkpoint/fixture_models.hpp"

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace fx = mlvae_fixture;
using mlvae_test::contains;

const std::string fixture_dir = std::string(MLVAE_TEST_SOURCE_DIR) + "/fixtures/checkpoint/";

/// expected.txt: "name value value ..." per line.
class Expected {
public:
  Expected() {
    std::ifstream in(fixture_dir + "expected.txt");
    REQUIRE(static_cast<bool>(in));
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty() || line[0] == '#') continue;
      std::istringstream words(line);
      std::string name, word;
      words >> name;
      while (words >> word) values_[name].push_back(word);
    }
  }
  std::vector<double> reals(const std::string& name) const {
    std::vector<double> r;
    for (const auto& w : at(name)) r.push_back(std::strtod(w.c_str(), nullptr));
    return r;
  }
  std::vector<float> floats(const std::string& name) const {
    std::vector<float> r;
    for (const auto& w : at(name)) r.push_back(std::strtof(w.c_str(), nullptr));
    return r;
  }
  std::vector<unsigned long long> integers(const std::string& name) const {
    std::vector<unsigned long long> r;
    for (const auto& w : at(name)) r.push_back(std::strtoull(w.c_str(), nullptr, 10));
    return r;
  }
  unsigned long long integer(const std::string& name) const { return integers(name).at(0); }

private:
  const std::vector<std::string>& at(const std::string& name) const {
    const auto it = values_.find(name);
    REQUIRE_MESSAGE(it != values_.end(), name);
    return it->second;
  }
  std::map<std::string, std::vector<std::string>> values_;
};

template <typename Vec>
std::vector<float> as_floats(const Vec& v) {
  return std::vector<float>(v.data(), v.data() + v.size());
}

template <typename Range>
std::vector<unsigned long long> as_integers(const Range& r) {
  return std::vector<unsigned long long>(r.begin(), r.end());
}

/// The state every training checkpoint restores, compared exactly with the recorded values.
template <typename Trainer>
void check_common(const Expected& e, const std::string& p, Trainer& t) {
  CHECK(as_floats(t.model().parameters().values) == e.floats(p + ".parameters"));
  CHECK(static_cast<unsigned long long>(t.optimizer().step_count()) == e.integer(p + ".adam_step"));
  CHECK(t.optimizer().options().learning_rate == e.reals(p + ".adam_learning_rate").at(0));
  CHECK(as_floats(t.optimizer().first_moment()) == e.floats(p + ".adam_first_moment"));
  CHECK(as_floats(t.optimizer().second_moment()) == e.floats(p + ".adam_second_moment"));
  CHECK(as_integers(t.noise().state()) == e.integers(p + ".noise_rng"));
  CHECK(t.noise().has_cached_normal() == (e.integer(p + ".noise_has_cached_normal") == 1));
  if (t.noise().has_cached_normal()) CHECK(t.noise().cached_normal() == e.reals(p + ".noise_cached_normal").at(0));
  CHECK(static_cast<unsigned long long>(t.step_in_epoch()) == e.integer(p + ".step_in_epoch"));
  CHECK(static_cast<unsigned long long>(t.skipped_steps()) == e.integer(p + ".skipped_steps"));
}

/// Three more steps from the loaded state reach the recorded parameters (to float rounding: the fixtures
/// may have been written by a build with other compiler flags).
template <typename Trainer, typename Report>
void check_resumes(const Expected& e, const std::string& p, Trainer& t) {
  mlvae_test::train_steps<Trainer, Report>(t, 3);
  const std::vector<float> want = e.floats(p + ".parameters_after_3_more_steps");
  const auto& got = t.model().parameters().values;
  REQUIRE(static_cast<std::size_t>(got.size()) == want.size());
  for (std::size_t i = 0; i < want.size(); ++i)
    CHECK(got[static_cast<mlvae::Index>(i)] == doctest::Approx(want[i]).epsilon(1e-4));
}

/// Saves `t` in today's format (binary and JSON), loads each into `fresh` and checks the same state
/// comes back (so a fixture converts to the current format without loss).
template <typename Trainer>
void check_rewrites(const Expected& e, const std::string& p, Trainer& t, Trainer& fresh) {
  mlvae_test::TempDir tmp;
  for (const auto format : {mlvae::CheckpointFormat::Binary, mlvae::CheckpointFormat::Json}) {
    mlvae::save_checkpoint(tmp.file("now"), t, format);
    CHECK(mlvae::read_checkpoint_info(tmp.file("now")).version == mlvae::checkpoint_version);
    mlvae::load_checkpoint(tmp.file("now"), fresh);
    check_common(e, p, fresh);
    CHECK(fresh.sampler().state().epoch == t.sampler().state().epoch);
    CHECK(fresh.noise() == t.noise());
  }
}

/// A version-1 file: the version-2 binary without its CRC-32 trailer, with version byte 1.
std::string as_version_1(const std::string& v2_bytes) {
  std::string bytes = v2_bytes.substr(0, v2_bytes.size() - 4);
  REQUIRE(bytes.substr(9, 16) == "mlvae-checkpoint");
  REQUIRE(bytes[25] == 2);
  bytes[25] = 1;
  return bytes;
}

}  // namespace

TEST_CASE("checkpoint fixtures: ML-VAE training checkpoints of format 1 and 2 (binary and JSON) load exactly") {
  const Expected e;
  mlvae_test::TempDir tmp;
  const std::string v1 = tmp.file("mlvae_training_v1.bin");
  mlvae_test::write_bytes(v1, as_version_1(mlvae_test::read_bytes(fixture_dir + "mlvae_training_v2.bin")));
  const auto data = fx::data(fx::observations);
  for (const std::string& path :
       {fixture_dir + "mlvae_training_v2.bin", fixture_dir + "mlvae_training_v2.json", v1}) {
    CAPTURE(path);
    const mlvae::CheckpointInfo info = mlvae::read_checkpoint_info(path);
    CHECK(info.version == (path == v1 ? 1u : 2u));
    CHECK(info.kind == "training");
    CHECK(info.model_kind == "MLVAE");
    CHECK(info.scalar_type == "float");
    CHECK(info.latent_sizes == std::vector<std::int64_t>{2, 1});
    const mlvae::TrainerOptions options = mlvae::read_checkpoint_options(path);
    CHECK(options.sampler.seed == e.integer("mlvae.sampler_seed"));
    CHECK(options.noise_seed == e.integer("mlvae.noise_seed"));
    CHECK(static_cast<unsigned long long>(options.sampler.groups_per_batch) == e.integer("mlvae.groups_per_batch"));
    CHECK(options.adam.learning_rate == e.reals("mlvae.adam_learning_rate").at(0));

    auto model = fx::grouped_model(99);  // other initial values: everything must come from the file
    mlvae::Trainer<fx::GroupedModel> trainer(model, data, fx::keys(fx::observations), options);
    mlvae::load_checkpoint(path, trainer);
    check_common(e, "mlvae", trainer);
    const auto s = trainer.sampler().state();
    CHECK(as_integers(s.rng_state) == e.integers("mlvae.sampler_rng"));
    CHECK(static_cast<unsigned long long>(s.epoch) == e.integer("mlvae.sampler_epoch"));
    CHECK(static_cast<unsigned long long>(s.cursor) == e.integer("mlvae.sampler_cursor"));
    CHECK(s.pending == (e.integer("mlvae.sampler_pending") == 1));
    CHECK(as_integers(s.order) == e.integers("mlvae.sampler_order"));
    std::vector<unsigned long long> groups;
    for (const auto& g : s.groups)
      groups.insert(groups.end(), {static_cast<unsigned long long>(g.begin), static_cast<unsigned long long>(g.end),
                                   static_cast<unsigned long long>(g.key)});
    CHECK(groups == e.integers("mlvae.sampler_groups"));
    auto other = fx::grouped_model(98);
    mlvae::Trainer<fx::GroupedModel> fresh(other, data, fx::keys(fx::observations), options);
    check_rewrites(e, "mlvae", trainer, fresh);
    CHECK(fresh.sampler().state().order == s.order);
    check_resumes<decltype(trainer), mlvae::StepReport>(e, "mlvae", trainer);
  }
  // The model file, and the model part of a training checkpoint.
  for (const std::string& path : {fixture_dir + "mlvae_model_v2.bin", fixture_dir + "mlvae_training_v2.json"}) {
    CAPTURE(path);
    auto model = fx::grouped_model(99);
    mlvae::load_model(path, model);
    CHECK(as_floats(model.parameters().values) == e.floats("mlvae.parameters"));
  }
  CHECK(mlvae::read_checkpoint_info(fixture_dir + "mlvae_model_v2.bin").kind == "model");
}

TEST_CASE("checkpoint fixtures: semi-supervised training checkpoints of format 1 and 2 (binary and JSON) load exactly") {
  const Expected e;
  mlvae_test::TempDir tmp;
  const std::string v1 = tmp.file("semisupervised_training_v1.bin");
  mlvae_test::write_bytes(v1, as_version_1(mlvae_test::read_bytes(fixture_dir + "semisupervised_training_v2.bin")));
  const auto data = fx::data(fx::observations);
  for (const std::string& path :
       {fixture_dir + "semisupervised_training_v2.bin", fixture_dir + "semisupervised_training_v2.json", v1}) {
    CAPTURE(path);
    const mlvae::CheckpointInfo info = mlvae::read_checkpoint_info(path);
    CHECK(info.version == (path == v1 ? 1u : 2u));
    CHECK(info.model_kind == "SemiSupervisedVAE/m2");
    const mlvae::SemiSupervisedTrainerOptions options = mlvae::read_semisupervised_checkpoint_options(path);
    CHECK(options.sampler.seed == e.integer("semi.sampler_seed"));
    CHECK(options.noise_seed == e.integer("semi.noise_seed"));
    CHECK(static_cast<unsigned long long>(options.sampler.labelled_per_batch) == e.integer("semi.labelled_per_batch"));
    CHECK(options.adam.learning_rate == e.reals("semi.adam_learning_rate").at(0));

    auto model = fx::semi_model(99);
    mlvae::SemiSupervisedTrainer<fx::SemiModel> trainer(model, data, fx::labelled(), fx::labels(), fx::unlabelled(),
                                                        options);
    mlvae::load_semisupervised_checkpoint(path, trainer);
    check_common(e, "semi", trainer);
    const auto s = trainer.sampler().state();
    CHECK(as_integers(s.rng_state) == e.integers("semi.sampler_rng"));
    CHECK(static_cast<unsigned long long>(s.epoch) == e.integer("semi.sampler_epoch"));
    CHECK(static_cast<unsigned long long>(s.batch) == e.integer("semi.sampler_batch"));
    CHECK(as_integers(s.labelled_plan) == e.integers("semi.sampler_labelled_plan"));
    CHECK(as_integers(s.unlabelled_plan) == e.integers("semi.sampler_unlabelled_plan"));
    auto other = fx::semi_model(98);
    mlvae::SemiSupervisedTrainer<fx::SemiModel> fresh(other, data, fx::labelled(), fx::labels(), fx::unlabelled(),
                                                      options);
    check_rewrites(e, "semi", trainer, fresh);
    CHECK(fresh.sampler().state().unlabelled_plan == s.unlabelled_plan);
    check_resumes<decltype(trainer), mlvae::SemiSupervisedStepReport>(e, "semi", trainer);
  }
  // A semi-supervised checkpoint is refused by the grouped trainer, naming what it holds.
  auto model = fx::grouped_model(99);
  mlvae::Trainer<fx::GroupedModel> trainer(model, fx::data(fx::observations), fx::keys(fx::observations),
                                           fx::grouped_options());
  CHECK_THROWS_WITH_AS(mlvae::load_checkpoint(fixture_dir + "semisupervised_training_v2.bin", trainer),
                       contains("model kind differs"), mlvae::IoError);
}
