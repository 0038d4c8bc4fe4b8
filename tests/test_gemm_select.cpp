// Kernels chosen by measurement (nn/gemm_select.hpp): every candidate kernel (Eigen, and OpenBLAS and
// BLIS where installed) agrees with a double-precision reference at the products of the MLP and
// conv28 ML-VAEs, transposes and accumulation as the layers use them, and gives bit-identical
// results with 1 and 2 threads; the choice is deterministic given the cache (a fake timer makes it
// so), the override wins, and a corrupt or unwritable cache is ignored without a crash. Kernels that
// are not installed are skipped with a message. No test depends on wall-clock time.
#include <doctest/doctest.h>

#include "mlvae/mlvae.hpp"

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

using namespace mlvae;

namespace {

// The distinct products (with their `accumulate`) of one forward_backward step of `model`.
template <typename Model>
std::set<std::pair<GemmProduct, bool>> products_of(Model model, Index groups, Index group_size) {
  static std::set<std::pair<GemmProduct, bool>>* seen = nullptr;
  std::set<std::pair<GemmProduct, bool>> out;
  seen = &out;
  gemm_shape_observer = [](Transpose ta, Transpose tb, Index m, Index n, Index k, bool acc) {
    seen->insert({GemmProduct{ta, tb, m, n, k}, acc});
  };
  Rng rng(1);
  model.initialize(rng);
  Matrix<float> x(model.data_size(), groups * group_size);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.uniform());
  std::vector<Index> offsets;
  for (Index g = 0; g <= groups; ++g) offsets.push_back(g * group_size);
  model.forward_backward(x, offsets, rng);
  gemm_shape_observer = nullptr;
  seen = nullptr;
  return out;
}

// The MLP ML-VAE at batch 256 and the conv28 ML-VAE at batch 64 (as the allocation tests run them).
const std::set<std::pair<GemmProduct, bool>>& model_products() {
  static const auto all = [] {
    auto out = products_of(make_mlp_mlvae<float>(784, 500, 10, 10), 16, 16);
    for (const auto& p : products_of(make_conv28_mlvae<float>(10, 10), 4, 16)) out.insert(p);
    return out;
  }();
  return all;
}

std::vector<GemmKernel> installed_kernels() {
  std::vector<GemmKernel> out{GemmKernel::Eigen};
  for (GemmKernel k : {GemmKernel::OpenBLAS, GemmKernel::BLIS}) {
    if (gemm_library(k))
      out.push_back(k);
    else
      MESSAGE("skipped: ", gemm_kernel_name(k), " is not installed");
  }
  return out;
}

// Operands of product p with leading dimensions padded by `pad` (strides other than the rows).
struct Operands {
  Matrix<float> a, b, c;
};
Operands operands(const GemmProduct& p, Index pad, Rng& rng) {
  Operands o;
  o.a.resize((p.ta == Transpose::No ? p.m : p.k) + pad, p.ta == Transpose::No ? p.k : p.m);
  o.b.resize((p.tb == Transpose::No ? p.k : p.n) + pad, p.tb == Transpose::No ? p.n : p.k);
  o.c.resize(p.m + pad, p.n);
  rng.fill_normal(o.a);
  rng.fill_normal(o.b);
  rng.fill_normal(o.c);
  return o;
}

void run_on(Gemm<float>& gemm, GemmKernel kernel, const GemmProduct& p, const Operands& in, Matrix<float>& c,
            bool accumulate) {
  gemm.run_on(kernel, p.ta, p.tb, p.m, p.n, p.k, in.a.data(), in.a.rows(), in.b.data(), in.b.rows(), c.data(),
              c.rows(), accumulate);
}

// A fresh directory for cache files, removed at the end of the scope.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    path = std::filesystem::temp_directory_path() /
           ("mlvae_gemm_select_" + std::to_string(static_cast<long>(::getpid())));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string file(const char* name) const { return (path / name).string(); }
};

// A deterministic timer: OpenBLAS takes half Eigen's time, BLIS 0.8 of it, on every product.
int fake_timer_calls = 0;
double fake_timer(GemmKernel kernel, const GemmProduct& p, int) {
  ++fake_timer_calls;
  const double eigen = p.work() * 1e-11;
  return kernel == GemmKernel::OpenBLAS ? 0.5 * eigen : kernel == GemmKernel::BLIS ? 0.8 * eigen : eigen;
}

// What fake_timer makes the selector choose for p.
GemmKernel fake_choice(const GemmProduct& p) {
  const auto c = gemm_candidates(p);
  if (std::find(c.begin(), c.end(), GemmKernel::OpenBLAS) != c.end()) return GemmKernel::OpenBLAS;
  if (std::find(c.begin(), c.end(), GemmKernel::BLIS) != c.end()) return GemmKernel::BLIS;
  return GemmKernel::Eigen;
}

GemmSelector::Options options_with_cache(const std::string& path) {
  GemmSelector::Options o;
  o.cache_path = path;
  o.machine = "test CPU\ttest-isa";
  o.skip_cache_when_busy = false;  // CI machines are busy; these tests are about the file
  return o;
}

const GemmProduct big{Transpose::No, Transpose::Yes, 500, 784, 256};    // 100 M: every library a candidate
const GemmProduct mid{Transpose::Yes, Transpose::No, 64, 512, 100};     // 3.3 M: not OpenBLAS
const GemmProduct small{Transpose::No, Transpose::No, 40, 256, 20};     // 0.2 M: Eigen only

}  // namespace

TEST_CASE("gemm select: every candidate kernel agrees with a double-precision reference at the models' products") {
  const auto kernels = installed_kernels();
  Rng rng(11);
  set_threads(2);
  int checked = 0, index = 0;
  for (const auto& [p, accumulate] : model_products()) {
    const auto candidates = gemm_candidates(p);
    const Index pad = index++ % 2 ? 3 : 0;  // every other product with leading dimensions > rows
    const Operands in = operands(p, pad, rng);
    const Matrix<double> a = in.a.cast<double>(), b = in.b.cast<double>();
    const Matrix<double> opa = p.ta == Transpose::No ? Matrix<double>(a.topRows(p.m)) : Matrix<double>(a.topRows(p.k).transpose());
    const Matrix<double> opb = p.tb == Transpose::No ? Matrix<double>(b.topRows(p.k)) : Matrix<double>(b.topRows(p.n).transpose());
    const Matrix<double> c0 = in.c.cast<double>().topRows(p.m);
    const Matrix<double> expected = (accumulate ? c0 : Matrix<double>::Zero(p.m, p.n)) + opa * opb;
    // Float32 sums of k terms: within (k + 1)·2^-23 of the sum of the absolute terms, which is at
    // most (sum of |row i of op(A)|)·(largest |entry of column j of op(B)|) (+ |C0|).
    const Vector<double> row_sums = opa.cwiseAbs().rowwise().sum();
    const Eigen::RowVectorXd col_max = opb.cwiseAbs().colwise().maxCoeff();
    const Matrix<double> scale = (accumulate ? Matrix<double>(c0.cwiseAbs()) : Matrix<double>::Zero(p.m, p.n)) +
                                 row_sums * col_max;
    const double bound = static_cast<double>(p.k + 1) * std::ldexp(1.0, -23);
    for (GemmKernel kernel : kernels) {
      if (std::find(candidates.begin(), candidates.end(), kernel) == candidates.end()) continue;
      Gemm<float> gemm;
      Matrix<float> c = in.c;
      run_on(gemm, kernel, p, in, c, accumulate);
      const Matrix<double> error = (c.cast<double>().topRows(p.m) - expected).cwiseAbs();
      INFO(gemm_kernel_name(kernel), " ", p.text(), " accumulate=", accumulate, " pad=", pad);
      CHECK((error.array() <= bound * scale.array()).all());
      CHECK(error.maxCoeff() < 1e-3 * std::sqrt(static_cast<double>(p.k)));  // N(0,1) operands: a tighter look
      if (pad > 0) CHECK(c.bottomRows(pad) == in.c.bottomRows(pad));  // C's padding rows left alone
      ++checked;
    }
  }
  CHECK(checked >= static_cast<int>(model_products().size()));
  set_threads(1);
}

TEST_CASE("gemm select: every candidate kernel gives bit-identical results with 1 and 2 threads") {
  const auto kernels = installed_kernels();
  Rng rng(12);
  for (const auto& [p, accumulate] : model_products()) {
    const auto candidates = gemm_candidates(p);
    const Operands in = operands(p, 0, rng);
    for (GemmKernel kernel : kernels) {
      if (std::find(candidates.begin(), candidates.end(), kernel) == candidates.end()) continue;
      Gemm<float> one, two;
      Matrix<float> c1 = in.c, c2 = in.c;
      set_threads(1);
      run_on(one, kernel, p, in, c1, accumulate);
      set_threads(2);
      run_on(two, kernel, p, in, c2, accumulate);
      INFO(gemm_kernel_name(kernel), " ", p.text());
      CHECK(c1 == c2);
    }
  }
  set_threads(1);
}

TEST_CASE("gemm select: candidates follow the size rules") {
  CHECK(gemm_candidates(small) == std::vector<GemmKernel>{GemmKernel::Eigen});
  const auto mid_c = gemm_candidates(mid), big_c = gemm_candidates(big);
  CHECK(mid_c.front() == GemmKernel::Eigen);
  CHECK(std::find(mid_c.begin(), mid_c.end(), GemmKernel::OpenBLAS) == mid_c.end());  // below 8 M
  CHECK(big_c.size() == 1 + gemm_libraries().size());
  CHECK(GemmSelector::fastest({{GemmKernel::Eigen, 1.0}, {GemmKernel::OpenBLAS, 0.98}}) == GemmKernel::Eigen);
  CHECK(GemmSelector::fastest({{GemmKernel::Eigen, 1.0}, {GemmKernel::OpenBLAS, 0.9}}) == GemmKernel::OpenBLAS);
  CHECK(GemmSelector::fastest({{GemmKernel::Eigen, 1.0}, {GemmKernel::OpenBLAS, 0.9}, {GemmKernel::BLIS, 0.85}}) ==
        GemmKernel::BLIS);
  CHECK(GemmSelector::fastest({{GemmKernel::Eigen, 1.0}, {GemmKernel::OpenBLAS, 0.9}, {GemmKernel::BLIS, 0.9}}) ==
        GemmKernel::OpenBLAS);
}

TEST_CASE("gemm select: the choice is deterministic given the cache") {
  TempDir dir;
  const std::string cache = dir.file("sub/dir/gemm_kernels.txt");  // directories are created
  fake_timer_calls = 0;
  GemmSelector first(options_with_cache(cache), fake_timer);
  for (const GemmProduct& p : {big, mid, small}) CHECK(first.kernel_for(p, 2) == fake_choice(p));
  const int measured = (gemm_candidates(big).size() > 1) + (gemm_candidates(mid).size() > 1);
  CHECK(first.measurements() == measured);
  int expected_calls = 0;  // every candidate timed in every round, for each product measured
  for (const GemmProduct& p : {big, mid})
    if (gemm_candidates(p).size() > 1) expected_calls += GemmSelector::measure_rounds * int(gemm_candidates(p).size());
  CHECK(fake_timer_calls == expected_calls);
  CHECK(first.kernel_for(big, 1) == fake_choice(big));  // the process keeps its choice at any thread count
  CHECK(first.measurements() == measured);
  if (measured == 0) {
    MESSAGE("skipped the cache checks: no library kernel is installed, every product runs on Eigen");
    return;
  }
  REQUIRE(std::filesystem::exists(cache));

  // A second selector (another process) reads the choices instead of measuring, even with a timer
  // that would now choose otherwise.
  GemmSelector second(options_with_cache(cache), [](GemmKernel k, const GemmProduct&, int) {
    return k == GemmKernel::Eigen ? 1e-6 : 1.0;
  });
  CHECK(second.cache_loaded());
  for (const GemmProduct& p : {big, mid, small}) CHECK(second.kernel_for(p, 2) == fake_choice(p));
  CHECK(second.measurements() == 0);
  const auto report = second.report();
  REQUIRE(report.size() == 3);
  for (const std::string& line : report)
    if (line.find(big.text()) == 0) CHECK(line.find("cached") != std::string::npos);

  // Another thread count is the same key (results must not depend on it): the cached choice.
  // Another machine is a different key: measured again.
  GemmSelector other_threads(options_with_cache(cache), [](GemmKernel k, const GemmProduct&, int) {
    return k == GemmKernel::Eigen ? 1e-6 : 1.0;
  });
  CHECK(other_threads.kernel_for(big, 3) == fake_choice(big));
  CHECK(other_threads.measurements() == 0);
  auto machine = options_with_cache(cache);
  machine.machine = "another CPU\ttest-isa";
  GemmSelector other_machine(machine, fake_timer);
  other_machine.kernel_for(big, 2);
  CHECK(other_machine.measurements() == 1);

  // A cache entry written by hand decides, whatever the timer says.
  const std::string hand = dir.file("hand.txt");
  {
    std::ofstream out(hand);
    out << "mlvae-gemm-kernels 1\n"
        << "test CPU\ttest-isa\t" << GemmSelector::available_kernels() << "\t2\t" << big.text() << "\teigen\teigen=1e-3\n";
  }
  GemmSelector from_hand(options_with_cache(hand), fake_timer);
  CHECK(from_hand.kernel_for(big, 2) == GemmKernel::Eigen);
  CHECK(from_hand.measurements() == 0);
}

TEST_CASE("gemm select: the override wins over measurement and cache") {
  TempDir dir;
  for (GemmKernel force : {GemmKernel::Eigen, GemmKernel::OpenBLAS, GemmKernel::BLIS}) {
    auto options = options_with_cache(dir.file("cache.txt"));
    options.force = force;
    GemmSelector selector(options, fake_timer);
    INFO("forced ", gemm_kernel_name(force));
    const bool installed = force == GemmKernel::Eigen || gemm_library(force) != nullptr;
    CHECK(selector.kernel_for(big, 2) == (installed ? force : GemmKernel::Eigen));
    // Where the forced kernel is not a candidate (too small, or OpenBLAS below 8 M), Eigen runs.
    CHECK(selector.kernel_for(small, 2) == GemmKernel::Eigen);
    const auto mid_c = gemm_candidates(mid);
    const bool mid_ok = std::find(mid_c.begin(), mid_c.end(), force) != mid_c.end();
    CHECK(selector.kernel_for(mid, 2) == (mid_ok ? force : GemmKernel::Eigen));
    CHECK(selector.measurements() == 0);
  }

  SUBCASE("MLVAE_GEMM_KERNEL") {
    auto read = [](const char* value) {
      ::setenv("MLVAE_GEMM_KERNEL", value, 1);
      GemmSelector::Options o;
      gemm_kernel_from_environment(o);
      return o;
    };
    CHECK(read("blis").force == std::optional<GemmKernel>(GemmKernel::BLIS));
    CHECK(read("openblas").force == std::optional<GemmKernel>(GemmKernel::OpenBLAS));
    CHECK(read("eigen").force == std::optional<GemmKernel>(GemmKernel::Eigen));
    CHECK(!read("auto").force);
    const auto bad = read("mkl");
    CHECK(!bad.force);
    CHECK(bad.force_note.find("not understood") != std::string::npos);
    ::unsetenv("MLVAE_GEMM_KERNEL");
  }

  SUBCASE("set_gemm_kernel on the process's selector") {
    const std::string saved = std::getenv("MLVAE_GEMM_CACHE") ? std::getenv("MLVAE_GEMM_CACHE") : "";
    const bool had = std::getenv("MLVAE_GEMM_CACHE") != nullptr;
    ::setenv("MLVAE_GEMM_CACHE", "", 1);  // no file written by this test
    Rng rng(4);
    const Operands in = operands(big, 0, rng);
    Gemm<float> gemm;
    Matrix<float> c(big.m, big.n), reference(big.m, big.n);
    gemm.run_on(GemmKernel::Eigen, big.ta, big.tb, big.m, big.n, big.k, in.a.data(), in.a.rows(), in.b.data(),
                in.b.rows(), reference.data(), big.m, false);
    set_gemm_kernel(GemmKernel::Eigen);
    gemm.run(big.ta, big.tb, in.a, in.b, c, false);  // the Gemm asks again after set_gemm_kernel
    CHECK(c == reference);
    const auto report = gemm_kernel_report();
    REQUIRE(report.size() == 2);
    CHECK(report[0].find("set_gemm_kernel(eigen)") != std::string::npos);
    CHECK(report[1].find(big.text() + " (") == 0);
    CHECK(report[1].find(": eigen (forced") != std::string::npos);
    if (had)
      ::setenv("MLVAE_GEMM_CACHE", saved.c_str(), 1);
    else
      ::unsetenv("MLVAE_GEMM_CACHE");
    reset_gemm_selection();  // back to the environment's choice
    CHECK(gemm_kernel_report().size() == 1);
  }
}

TEST_CASE("gemm select: a corrupt or unwritable cache is ignored without a crash") {
  TempDir dir;
  const bool any_library = gemm_candidates(big).size() > 1;
  const std::string available = GemmSelector::available_kernels();
  const std::vector<std::string> contents{
      "",                                                     // empty
      std::string("\x00\xff\xfe garbage\n\n\t\t\t", 14),     // binary
      "mlvae-gemm-kernels 99\n",                              // another version
      "mlvae-gemm-kernels 1\n"                                // right header, broken lines
      "\n"
      "\t\t\t\t\t\t\n"
      "test CPU\ttest-isa\t" + available + "\tabc\t" + big.text() + "\teigen\t\n"
      "test CPU\ttest-isa\t" + available + "\t99999999999999999999\t" + big.text() + "\teigen\t\n"
      "test CPU\ttest-isa\t" + available + "\t2\t" + big.text() + "\tmkl\teigen=1\n"
      "test CPU\ttest-isa\t" + available + "\t2\t" + big.text() + "\n"
      "test CPU\ttest-isa\t" + available + "\t2\t" + big.text() + "\topenblas\teigen=nan,openblas=-1,=,x\t\textra\n" +
      std::string(100000, '\t') + "\n"};
  for (std::size_t i = 0; i < contents.size(); ++i) {
    const std::string path = dir.file(("corrupt" + std::to_string(i) + ".txt").c_str());
    {
      std::ofstream out(path, std::ios::binary);
      out << contents[i];
    }
    INFO("cache file ", i);
    GemmSelector selector(options_with_cache(path), fake_timer);
    CHECK(selector.kernel_for(big, 2) == fake_choice(big));
    CHECK(selector.measurements() == (any_library ? 1 : 0));
    if (any_library) {  // the file was repaired (or appended to): the next selector reads the choice
      GemmSelector next(options_with_cache(path), fake_timer);
      CHECK(next.cache_loaded());
      CHECK(next.kernel_for(big, 2) == fake_choice(big));
      CHECK(next.measurements() == 0);
    }
  }
  // A kernel named by the cache that is not a candidate for the product (OpenBLAS below 8 M
  // multiply-adds): measured instead.
  {
    const std::string path = dir.file("stale.txt");
    std::ofstream(path) << "mlvae-gemm-kernels 1\n"
                        << "test CPU\ttest-isa\t" << available << "\t2\t" << mid.text() << "\topenblas\t\n";
    GemmSelector selector(options_with_cache(path), fake_timer);
    CHECK(selector.kernel_for(mid, 2) == fake_choice(mid));
    CHECK(selector.measurements() == (gemm_candidates(mid).size() > 1 ? 1 : 0));
  }
  // Unwritable: a path under a regular file, and a directory in place of the file.
  const std::string file = dir.file("plain");
  std::ofstream(file) << "x";
  for (const std::string& path : {file + "/sub/cache.txt", dir.path.string()}) {
    INFO("cache path ", path);
    GemmSelector selector(options_with_cache(path), fake_timer);
    CHECK(selector.kernel_for(big, 2) == fake_choice(big));
    CHECK_FALSE(selector.cache_loaded());
  }
}

TEST_CASE("gemm select: nothing is measured while other threads keep the cores busy") {
  // A kernel timed on cores that other threads also run on loses the more, the more threads it uses,
  // so such timings must not decide (nor be cached). Keep every core busy and ask: busy, for any
  // thread count the selector might measure at.
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  std::atomic<bool> stop{false};
  std::vector<std::thread> spinners;
  for (unsigned i = 0; i < cores; ++i)
    spinners.emplace_back([&] {
      volatile unsigned long long x = 0;
      while (!stop.load(std::memory_order_relaxed)) x = x + 1;
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the spinners are running
  const std::string one = mlvae::detail::machine_busy(1);
  const std::string all = mlvae::detail::machine_busy(static_cast<int>(cores));
  stop = true;
  for (auto& t : spinners) t.join();
  CAPTURE(one);
  CAPTURE(all);
  CHECK(!one.empty());
  CHECK(!all.empty());
  CHECK(one.find("busy") != std::string::npos);
}
