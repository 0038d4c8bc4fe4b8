// Sanity tests of the disentanglement metrics (eval/disentanglement.hpp) on representations built
// directly from the ground-truth factors: the factors themselves score near the top, a random
// rotation of them and pure noise score low, and duplicating a factor in two dimensions is penalised
// by the metrics that measure compactness (MIG, SAP, DCI completeness) and by no other.
#include <doctest/doctest.h>

#include "support.hpp"

#include "mlvae/data/dsprites.hpp"
#include "mlvae/eval/disentanglement.hpp"

#include <Eigen/QR>

#include <cmath>
#include <vector>

using namespace mlvae;

namespace {

// A small grid (every factor ≤ 20 values, so the 20-bin histograms resolve each factor exactly).
const FactorGrid& small_grid() {
  static const FactorGrid g({3, 6, 10, 8, 8});
  return g;
}

// Factor values scaled to [0, 1], one row per factor.
Matrix<double> factor_codes(const FactorGrid& g, const std::vector<Index>& indices) {
  Matrix<double> codes(g.num_factors(), static_cast<Index>(indices.size()));
  std::vector<int> f;
  for (std::size_t j = 0; j < indices.size(); ++j) {
    g.factors_of(indices[j], f);
    for (int k = 0; k < g.num_factors(); ++k)
      codes(k, static_cast<Index>(j)) = f[static_cast<std::size_t>(k)] / double(std::max(1, g.factor_size(k) - 1));
  }
  return codes;
}

DisentanglementOptions quick_options() {
  DisentanglementOptions o;
  o.beta_vae_train = 400;
  o.beta_vae_eval = 200;
  o.factor_vae_train = 400;
  o.factor_vae_eval = 200;
  o.factor_vae_variance = 2000;
  o.sample_train = 3000;
  o.sample_test = 1000;
  return o;
}

DisentanglementReport run(const RepresentationFunction& rep, std::uint64_t seed = 1) {
  Rng rng(seed);
  return evaluate_disentanglement(small_grid(), rep, rng, quick_options());
}

}  // namespace

TEST_CASE("disentanglement metrics: the true factors score near the top") {
  const auto r = run([](const std::vector<Index>& idx, Matrix<double>& codes) { codes = factor_codes(small_grid(), idx); });
  CHECK(r.mig.mig > 0.95);
  CHECK(r.factor_vae.eval_accuracy > 0.99);
  CHECK(r.factor_vae.active_dims == 5);
  CHECK(r.beta_vae.eval_accuracy > 0.95);
  CHECK(r.dci.disentanglement > 0.85);
  CHECK(r.dci.completeness > 0.85);
  CHECK(r.dci.informativeness_test > 0.9);
  // SAP's ceiling is the mean of 1 − (chance accuracy of the best other dimension): about 0.83 here.
  CHECK(r.sap.sap > 0.75);
  // MI of a factor with its own code equals the factor's entropy.
  CHECK(r.mig.mutual_information(2, 2) == doctest::Approx(r.mig.factor_entropy(2)).epsilon(1e-9));
}

TEST_CASE("disentanglement metrics: a random rotation and pure noise score low") {
  // Rotation of the standardised factors by a random orthogonal matrix: every code mixes all factors.
  Matrix<double> a(5, 5);
  Rng rot_rng(17);
  rot_rng.fill_normal(a);
  const Matrix<double> q = Eigen::HouseholderQR<Matrix<double>>(a).householderQ();
  const auto rotated = run([&](const std::vector<Index>& idx, Matrix<double>& codes) {
    codes = q * ((factor_codes(small_grid(), idx).array() - 0.5) * 3.4).matrix();
  });
  const auto truth = run([](const std::vector<Index>& idx, Matrix<double>& codes) { codes = factor_codes(small_grid(), idx); });
  CHECK(rotated.mig.mig < 0.35);
  CHECK(rotated.sap.sap < 0.35);
  CHECK(rotated.dci.disentanglement < 0.6);
  CHECK(rotated.dci.disentanglement < truth.dci.disentanglement - 0.3);
  CHECK(rotated.factor_vae.eval_accuracy < 0.9);
  // The codes still hold all the information (an invertible map): a linear probe still reads it.
  CHECK(rotated.dci.informativeness_test > 0.5);

  Rng noise_rng(3);
  const auto noise = run([&](const std::vector<Index>& idx, Matrix<double>& codes) {
    codes.resize(5, static_cast<Index>(idx.size()));
    noise_rng.fill_normal(codes);
  });
  CHECK(noise.mig.mig < 0.05);
  CHECK(noise.sap.sap < 0.1);
  CHECK(noise.factor_vae.eval_accuracy < 0.45);
  CHECK(noise.beta_vae.eval_accuracy < 0.4);  // chance: 1/5
  CHECK(noise.dci.informativeness_test < 0.4);
}

TEST_CASE("disentanglement metrics: a factor duplicated in two dimensions") {
  const auto truth = run([](const std::vector<Index>& idx, Matrix<double>& codes) { codes = factor_codes(small_grid(), idx); });
  const auto dup = run([](const std::vector<Index>& idx, Matrix<double>& codes) {
    const Matrix<double> f = factor_codes(small_grid(), idx);
    codes.resize(6, f.cols());
    codes.topRows(5) = f;
    codes.row(5) = f.row(1);  // scale twice
  });
  // MIG and SAP: the gap for the duplicated factor closes (one fifth of the mean).
  CHECK(dup.mig.mig < truth.mig.mig - 0.15);
  CHECK(dup.sap.sap < truth.sap.sap - 0.1);
  // DCI: the importance of the factor spreads over two codes (completeness falls) while each code
  // still serves one factor (disentanglement stays).
  CHECK(dup.dci.completeness < truth.dci.completeness - 0.05);
  CHECK(dup.dci.disentanglement > truth.dci.disentanglement - 0.05);
  // The FactorVAE and β-VAE scores only ask whether a factor can be identified: not penalised.
  CHECK(dup.factor_vae.eval_accuracy > 0.99);
  CHECK(dup.beta_vae.eval_accuracy > 0.95);
}

TEST_CASE("disentanglement metrics: helpers and bad input") {
  Matrix<double> c(1, 5);
  c << 0.0, 0.24, 0.5, 0.99, 1.0;
  const Matrix<int> bins = histogram_discretize(c, 4);
  CHECK(bins(0, 0) == 0);
  CHECK(bins(0, 1) == 0);
  CHECK(bins(0, 2) == 2);
  CHECK(bins(0, 3) == 3);
  CHECK(bins(0, 4) == 3);  // the maximum goes to the last bin, as numpy.digitize on histogram edges
  Eigen::RowVectorXi a(4), b(4);
  a << 0, 0, 1, 1;
  b << 1, 1, 0, 0;
  CHECK(discrete_mutual_information(a, b) == doctest::Approx(std::log(2.0)));
  b << 0, 1, 0, 1;
  CHECK(discrete_mutual_information(a, b) == doctest::Approx(0.0));
  CHECK_THROWS_WITH_AS(mig_score(Matrix<double>::Zero(1, 4), Matrix<int>::Zero(2, 4)),
                       mlvae_test::contains(">= 2 code dimensions"), ShapeError);
  Rng rng(1);
  CHECK_THROWS_AS(sample_factor_codes(small_grid(),
                                      [](const std::vector<Index>& idx, Matrix<double>& codes) {
                                        codes.resize(3, static_cast<Index>(idx.size()) + 1);
                                      },
                                      10, rng),
                  ShapeError);
}

TEST_CASE("disentanglement metrics: codes and factors written to CSV") {
  mlvae_test::TempDir dir;
  Rng rng(2);
  const FactorCodeSample s = sample_factor_codes(
      small_grid(), [](const std::vector<Index>& idx, Matrix<double>& codes) { codes = factor_codes(small_grid(), idx); },
      7, rng);
  write_factor_codes_csv(dir.file("codes.csv"), small_grid(), s);
  const std::string text = mlvae_test::read_bytes(dir.file("codes.csv"));
  CHECK(text.rfind("index,factor0,factor1,factor2,factor3,factor4,code0,code1,code2,code3,code4\n", 0) == 0);
  CHECK(std::count(text.begin(), text.end(), '\n') == 8);
  // The first data row starts with the observation's index and its factor values.
  const std::vector<int> f = small_grid().factors_of(s.indices[0]);
  const std::string row = std::to_string(s.indices[0]) + "," + std::to_string(f[0]) + "," + std::to_string(f[1]);
  CHECK(text.find("\n" + row + ",") != std::string::npos);
}
