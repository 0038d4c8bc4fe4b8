// tests/test_own_data.cpp — a user's own data: the .npy reader (dtypes, byte orders, C and Fortran
// order, header validation), the CSV reader (header detection, quotes, errors with line and column),
// datasets with group keys from a column or a file, the seeded split, standardisation, the checks
// that name the split, the Bernoulli range check, and gradient checks of the MLP builders with
// Gaussian likelihoods and two hidden layers.
#include <doctest/doctest.h>

#include "support.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "mlvae/mlvae.hpp"

namespace {

using mlvae_test::contains;
using mlvae_test::TempDir;
using mlvae_test::write_bytes;

/// A .npy file written byte by byte (to test what write_npy never produces).
std::string npy_bytes(const std::string& dict, const std::string& payload) {
  std::string header = dict;
  header.append((64 - (10 + header.size() + 1) % 64) % 64, ' ');
  header.push_back('\n');
  std::string out("\x93NUMPY\x01\x00", 8);
  out.push_back(static_cast<char>(header.size() & 0xff));
  out.push_back(static_cast<char>(header.size() >> 8));
  return out + header + payload;
}

template <typename V>
std::string raw(const std::vector<V>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(V));
}

}  // namespace

TEST_CASE("npy: float64 - float32 - uint8 round trip in C order") {
  TempDir tmp;
  mlvae::write_npy<double>(tmp.file("d.npy"), {2, 3}, {1, 2, 3, 4, 5, 6.5});
  const auto d = mlvae::read_npy<double>(tmp.file("d.npy"));
  CHECK(d.shape == std::vector<std::size_t>{2, 3});
  CHECK(d.values == std::vector<double>{1, 2, 3, 4, 5, 6.5});
  CHECK(d.dtype == "<f8");
  mlvae::write_npy<float>(tmp.file("f.npy"), {4}, {0.5f, -1, 2, 3});
  CHECK(mlvae::read_npy<float>(tmp.file("f.npy")).values == std::vector<float>{0.5f, -1, 2, 3});
  mlvae::write_npy<std::uint8_t>(tmp.file("u.npy"), {1, 2, 2}, {0, 1, 254, 255});
  const auto u = mlvae::read_npy<double>(tmp.file("u.npy"));
  CHECK(u.shape == std::vector<std::size_t>{1, 2, 2});
  CHECK(u.values == std::vector<double>{0, 1, 254, 255});
}

TEST_CASE("npy: Fortran order and big-endian files come back in C order") {
  TempDir tmp;
  // The 2 x 3 matrix [[1, 2, 3], [4, 5, 6]] stored column by column.
  write_bytes(tmp.file("f.npy"), npy_bytes("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }",
                                           raw(std::vector<float>{1, 4, 2, 5, 3, 6})));
  CHECK(mlvae::read_npy<double>(tmp.file("f.npy")).values == std::vector<double>{1, 2, 3, 4, 5, 6});
  // A 2 x 2 x 2 array in Fortran order: element (i, j, k) at i + 2 j + 4 k.
  std::vector<double> fortran(8), expected(8);
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j)
      for (int k = 0; k < 2; ++k) {
        fortran[static_cast<std::size_t>(i + 2 * j + 4 * k)] = 100 * i + 10 * j + k;
        expected[static_cast<std::size_t>(4 * i + 2 * j + k)] = 100 * i + 10 * j + k;
      }
  write_bytes(tmp.file("f3.npy"),
              npy_bytes("{'descr': '<f8', 'fortran_order': True, 'shape': (2, 2, 2), }", raw(fortran)));
  CHECK(mlvae::read_npy<double>(tmp.file("f3.npy")).values == expected);
  // Big-endian float64 1.5 and -2.
  const std::string be("\x3f\xf8\0\0\0\0\0\0\xc0\0\0\0\0\0\0\0", 16);
  write_bytes(tmp.file("be.npy"), npy_bytes("{'descr': '>f8', 'fortran_order': False, 'shape': (2,), }", be));
  CHECK(mlvae::read_npy<double>(tmp.file("be.npy")).values == std::vector<double>{1.5, -2});
}

TEST_CASE("npy: the header is read as the Python dict literal it is") {
  TempDir tmp;
  const std::string path = tmp.file("h.npy");
  const std::string payload = raw(std::vector<float>{1, 2, 3, 4});
  // Double quotes (a valid literal NumPy reads), any key order, trailing comma or not, Python 2's 2L.
  for (const char* dict : {"{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2, 2)}",
                           "{'shape': (2, 2), 'fortran_order': False, 'descr': '<f4'}",
                           "{ 'fortran_order' : False , 'descr' : '<f4' , 'shape' : ( 2 , 2 , ) , }",
                           "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 2L), }"}) {
    CAPTURE(dict);
    write_bytes(path, npy_bytes(dict, payload));
    const auto a = mlvae::read_npy<double>(path);
    CHECK(a.shape == std::vector<std::size_t>{2, 2});
    CHECK(a.values == std::vector<double>{1, 2, 3, 4});
  }
  write_bytes(path, npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': ()}", raw(std::vector<float>{7})));
  CHECK(mlvae::read_npy<double>(path).values == std::vector<double>{7});  // a scalar
  // A header that is no dict literal is reported as such, quoted; a missing key is named.
  write_bytes(path, npy_bytes("{'descr': '<f4' 'fortran_order': False, 'shape': (4,)}", payload));
  CHECK_THROWS_WITH_AS(mlvae::read_npy<double>(path),
                       contains("the header is not a Python dict literal (expected ',' or '}' at character 16): "
                                "{'descr': '<f4' 'fortran_order'"),
                       mlvae::IoError);
  write_bytes(path, npy_bytes("{'descr': '<f4, 'fortran_order': False, 'shape': (4,)}", payload));
  CHECK_THROWS_WITH_AS(mlvae::read_npy<double>(path), contains("not a Python dict literal"), mlvae::IoError);
  write_bytes(path, npy_bytes("{\"descr\": \"<f4\", \"shape\": (4,)}", payload));
  CHECK_THROWS_WITH_AS(mlvae::read_npy<double>(path), contains("the header has no 'fortran_order' entry"),
                       mlvae::IoError);
}

TEST_CASE("npy: every dtype NumPy writes for keys and observations (files written by NumPy)") {
  const std::string dir = std::string(MLVAE_TEST_SOURCE_DIR) + "/fixtures/npy/";
  // Group keys [3, 1, 3, 2] in every integer width, both byte orders, (N,) and (N, 1): the same ids
  // as the CSV reader gives "3\n1\n3\n2\n" (numeric keys ordered by value).
  TempDir tmp;
  write_bytes(tmp.file("x.csv"), "a,b\n1,2\n3,4\n5,6\n7,8\n");
  mlvae::DatasetSource src;
  src.data = tmp.file("x.csv");
  write_bytes(tmp.file("k.csv"), "3\n1\n3\n2\n");
  src.groups = tmp.file("k.csv");
  const auto from_csv = mlvae::load_dataset<double>(src);
  REQUIRE(from_csv.key_names == std::vector<std::string>{"1", "2", "3"});
  for (const char* name : {"keys_i1", "keys_i2", "keys_i4", "keys_i8", "keys_u1", "keys_u2", "keys_u4", "keys_u8",
                           "keys_i8_be", "keys_i8_n1"}) {
    CAPTURE(name);
    src.groups = dir + name + ".npy";
    const auto ds = mlvae::load_dataset<double>(src);
    CHECK(ds.keys == from_csv.keys);
    CHECK(ds.key_names == from_csv.key_names);
    src.labels = src.groups;  // labels read the same way
    CHECK(mlvae::load_dataset<double>(src).labels == from_csv.keys);
    src.labels.clear();
  }
  const auto keys_of = [&](const char* name) {
    src.groups = dir + name + ".npy";
    const auto ds = mlvae::load_dataset<double>(src);
    return std::make_pair(ds.keys, ds.key_names);
  };
  CHECK(keys_of("keys_bool") == std::make_pair(std::vector<int>{1, 0, 1, 1}, std::vector<std::string>{"False", "True"}));
  CHECK(keys_of("keys_U") ==
        std::make_pair(std::vector<int>{1, 0, 1, 2}, std::vector<std::string>{"east", "north", "s\xc3\xbc" "d"}));
  CHECK(keys_of("keys_S") == std::make_pair(std::vector<int>{1, 0, 1, 2}, std::vector<std::string>{"a", "b", "cc"}));
  CHECK(keys_of("keys_U_numeric") ==
        std::make_pair(std::vector<int>{1, 0, 1, 0}, std::vector<std::string>{"9", "10"}));
  // Floats as keys mean what "2.0, 1.0, 2.0, 0.5" means in a CSV file: not all integers, so text keys.
  write_bytes(tmp.file("kf.csv"), "2\n1\n2\n0.5\n");
  src.groups = tmp.file("kf.csv");
  const auto float_csv = mlvae::load_dataset<double>(src);
  CHECK(keys_of("keys_f8") == std::make_pair(float_csv.keys, float_csv.key_names));

  // Observations: float16 (both byte orders), integers and bool taken as they are, uint8 scaled by
  // 1/255, Fortran order back in C order.
  const auto obs = [&](const char* name) {
    mlvae::DatasetSource s;
    s.data = dir + name + ".npy";
    return mlvae::load_dataset<double>(s).x;  // features x N
  };
  const auto expect = [](std::vector<double> c_order) {  // 2 x 3 (N x D) in C order -> 3 x 2
    mlvae::Matrix<double> m(3, 2);
    for (int n = 0; n < 2; ++n)
      for (int d = 0; d < 3; ++d) m(d, n) = c_order[static_cast<std::size_t>(3 * n + d)];
    return m;
  };
  CHECK(obs("obs_f2") == expect({0.5, -2, 65504, 6.103515625e-05, 1, 0}));
  CHECK(obs("obs_f2_be") == expect({0.5, -2, 65504, 6.103515625e-05, 1, 0}));
  CHECK(obs("obs_i2") == expect({-3, 0, 7, 32767, -32768, 1}));
  CHECK(obs("obs_u2") == expect({0, 1, 65535, 2, 3, 4}));
  CHECK(obs("obs_bool") == expect({1, 0, 1, 0, 0, 1}));
  CHECK(obs("obs_i4_fortran") == expect({0, 1, 2, 3, 4, 5}));
  CHECK(obs("obs_u1_fortran") == expect({0, 1, 0.2, 0.4, 0.6, 0.8}));
  // Text is for keys and labels, not observations.
  CHECK_THROWS_WITH_AS(mlvae::read_npy<double>(dir + "keys_U.npy"), contains("holds text (dtype '<U5')"),
                       mlvae::IoError);
  // Subnormal and special float16 values.
  CHECK(mlvae::detail::half_to_float(0x0001) == std::ldexp(1.0f, -24));
  CHECK(mlvae::detail::half_to_float(0x8400) == -std::ldexp(1.0f, -14));
  CHECK(std::isinf(mlvae::detail::half_to_float(0x7c00)));
  CHECK(std::isnan(mlvae::detail::half_to_float(0x7e00)));
}

TEST_CASE("npy: bad files are IoErrors that say what is wrong") {
  TempDir tmp;
  const std::string path = tmp.file("bad.npy");
  write_bytes(path, "PK\x03\x04 not a numpy file at all");
  CHECK_THROWS_WITH_AS(mlvae::read_npy<double>(path), contains("not a NumPy .npy file"), mlvae::IoError);
  write_bytes(path, npy_bytes("{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", raw(std::vector<float>{1, 2, 3, 4})));
  CHECK_THROWS_WITH_AS(mlvae::read_npy<double>(path), contains("unsupported dtype '<c8'"), mlvae::IoError);
  write_bytes(path, npy_bytes("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", raw(std::vector<float>{1})));
  CHECK_THROWS_WITH_AS(mlvae::read_npy<double>(path), contains("structured"), mlvae::IoError);
  write_bytes(path, npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", raw(std::vector<double>{1, 2})));
  CHECK_THROWS_WITH_AS(mlvae::read_npy<double>(path), contains("expected 24 bytes of data"), mlvae::IoError);
  write_bytes(path, npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }", raw(std::vector<double>{1, 2})));
  CHECK_THROWS_WITH_AS(mlvae::read_npy<double>(path), contains("more bytes than the shape"), mlvae::IoError);
  write_bytes(path, npy_bytes("{'descr': '<f8', 'shape': (1,), }", raw(std::vector<double>{1})));
  CHECK_THROWS_WITH_AS(mlvae::read_npy<double>(path), contains("no 'fortran_order' entry"), mlvae::IoError);
  write_bytes(path, npy_bytes("{'descr': '<f8', 'fortran_order': maybe, 'shape': (1,), }", raw(std::vector<double>{1})));
  CHECK_THROWS_WITH_AS(mlvae::read_npy<double>(path), contains("fortran_order True or False"), mlvae::IoError);
  write_bytes(path, npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (-1,), }", ""));
  CHECK_THROWS_WITH_AS(mlvae::read_npy<double>(path), contains("non-negative integers"), mlvae::IoError);
  write_bytes(path, std::string("\x93NUMPY\x09\x00", 8));
  CHECK_THROWS_WITH_AS(mlvae::read_npy<double>(path), contains("unsupported format version 9"), mlvae::IoError);
  CHECK_THROWS_WITH_AS(mlvae::read_npy<double>(tmp.file("missing.npy")), contains("does not exist"), mlvae::IoError);
}

TEST_CASE("csv: header detection - quotes - blank lines - and errors with line and column") {
  TempDir tmp;
  write_bytes(tmp.file("h.csv"), "x,\"name, with comma\",key\r\n1,2.5,a\n\n3,-4e-1,\"b \"\"q\"\"\"\n");
  const auto t = mlvae::read_csv(tmp.file("h.csv"));
  CHECK(t.had_header);
  CHECK(t.names == std::vector<std::string>{"x", "name, with comma", "key"});
  CHECK(t.rows() == 2);
  CHECK(t.lines == std::vector<std::size_t>{2, 4});
  CHECK(t.numeric_column(1) == std::vector<double>{2.5, -0.4});
  CHECK(t.cell(1, 2) == "b \"q\"");
  CHECK(t.column_index("key") == 2);
  CHECK_THROWS_WITH_AS(t.column_index("nope"), contains("no column 'nope' (columns: x, name, with comma, key)"),
                       mlvae::ArgumentError);
  CHECK_THROWS_WITH_AS(t.numeric_column(2), contains("line 2, column 'key': expected a finite number, found 'a'"),
                       mlvae::IoError);

  write_bytes(tmp.file("n.csv"), "1,2\n3,4\n");
  const auto n = mlvae::read_csv(tmp.file("n.csv"));
  CHECK_FALSE(n.had_header);
  CHECK(n.rows() == 2);
  CHECK(n.column_index("1") == 1);

  write_bytes(tmp.file("ragged.csv"), "a,b\n1,2\n3\n");
  CHECK_THROWS_WITH_AS(mlvae::read_csv(tmp.file("ragged.csv")), contains("line 3: expected 2 fields"), mlvae::IoError);
  write_bytes(tmp.file("quote.csv"), "a,b\n1,\"2\n");
  CHECK_THROWS_WITH_AS(mlvae::read_csv(tmp.file("quote.csv")), contains("line 2: unterminated double quote"),
                       mlvae::IoError);
  write_bytes(tmp.file("empty.csv"), "\n\n");
  CHECK_THROWS_WITH_AS(mlvae::read_csv(tmp.file("empty.csv")), contains("is empty"), mlvae::IoError);
  write_bytes(tmp.file("nan.csv"), "a\n1\nnan\n");
  CHECK_THROWS_WITH_AS(mlvae::read_csv(tmp.file("nan.csv")).numeric_column(0), contains("line 3"), mlvae::IoError);
}

TEST_CASE("dataset: group keys and labels from a CSV column or a file") {
  TempDir tmp;
  write_bytes(tmp.file("t.csv"), "a,site,b,kind\n1,north,2,x\n3,south,4,y\n5,north,6,y\n7,east,8,x\n");
  mlvae::DatasetSource src;
  src.data = tmp.file("t.csv");
  src.group_column = "site";
  src.label_column = "kind";
  const auto ds = mlvae::load_dataset<double>(src);
  CHECK(ds.x.rows() == 2);
  CHECK(ds.size() == 4);
  CHECK(ds.x(1, 2) == 6);
  CHECK(ds.feature_names == std::vector<std::string>{"a", "b"});
  CHECK(ds.key_names == std::vector<std::string>{"east", "north", "south"});
  CHECK(ds.keys == std::vector<int>{1, 2, 1, 0});
  CHECK(ds.labels == std::vector<int>{0, 1, 1, 0});
  CHECK_FALSE(ds.is_image());

  // Keys of a .npy file from a separate file; numeric keys are ordered by value.
  mlvae::write_npy<float>(tmp.file("x.npy"), {3, 2, 2}, std::vector<float>(12, 0.25f));
  write_bytes(tmp.file("k.csv"), "10\n9\n10\n");
  src = {};
  src.data = tmp.file("x.npy");
  src.groups = tmp.file("k.csv");
  const auto img = mlvae::load_dataset<float>(src);
  CHECK(img.is_image());
  CHECK(img.height == 2);
  CHECK(img.key_names == std::vector<std::string>{"9", "10"});
  CHECK(img.keys == std::vector<int>{1, 0, 1});
  write_bytes(tmp.file("k2.csv"), "1\n2\n");
  src.groups = tmp.file("k2.csv");
  CHECK_THROWS_WITH_AS(mlvae::load_dataset<float>(src), contains("2 keys for the 3 observations"), mlvae::IoError);
  src.groups.clear();
  src.group_column = "site";
  CHECK_THROWS_WITH_AS(mlvae::load_dataset<float>(src), contains("need a CSV file"), mlvae::ArgumentError);
}

TEST_CASE("dataset: seeded split - standardisation - and checks that name the split") {
  mlvae::Dataset<double> ds;
  ds.x.resize(2, 10);
  for (mlvae::Index j = 0; j < 10; ++j) {
    ds.x(0, j) = static_cast<double>(j);
    ds.x(1, j) = 5.0;
    ds.keys.push_back(static_cast<int>(j % 2));
  }
  ds.key_names = {"a", "b"};
  ds.source = "toy";
  const auto [train, test] = mlvae::split_dataset(ds, 0.3, 7);
  CHECK(train.size() == 7);
  CHECK(test.size() == 3);
  const auto again = mlvae::split_dataset(ds, 0.3, 7);
  CHECK(again.second.x == test.x);
  CHECK((train.x.row(0).sum() + test.x.row(0).sum()) == doctest::Approx(45));
  CHECK_THROWS_AS(mlvae::split_dataset(ds, 1.5, 7), mlvae::ArgumentError);

  auto s = mlvae::Standardizer<double>::fit(ds.x);
  mlvae::Matrix<double> z = ds.x;
  s.apply(z);
  CHECK(std::abs(z.row(0).mean()) < 1e-12);
  CHECK(std::sqrt(z.row(0).array().square().mean()) == doctest::Approx(1.0));
  CHECK(z.row(1).cwiseAbs().maxCoeff() == 0.0);  // a constant feature stays finite

  mlvae::check_split(ds, "training split of 'toy'", 2);
  auto one = mlvae::subset(ds, {0, 2, 4});
  CHECK_THROWS_WITH_AS(mlvae::check_split(one, "training split of 'toy'", 2),
                       contains("the training split of 'toy' holds 1 distinct group key(s)"), mlvae::ArgumentError);
  auto none = mlvae::subset(ds, {});
  CHECK_THROWS_WITH_AS(mlvae::check_split(none, "test split of 'toy'"), contains("test split of 'toy' holds 0 observations"),
                       mlvae::ArgumentError);
  CHECK_THROWS_WITH_AS(mlvae::BernoulliLikelihood<double>::check_data(ds.x, "training split of 'toy'"),
                       contains("[0, 1] but the training split of 'toy' holds 5 (observation 0, feature 1)"),
                       mlvae::ArgumentError);
  mlvae::GaussianLikelihood<double>::check_data(ds.x, "training split of 'toy'");
}

TEST_CASE("gradient check: MLP builders with Gaussian likelihoods and two hidden layers") {
  const mlvae::Index input = 5, hidden = 4, style = 2, content = 3;
  mlvae::Rng rng(3);
  mlvae::Matrix<double> x(input, 5);
  rng.fill_normal(x);
  const std::vector<mlvae::Index> offsets{0, 2, 5};
  SUBCASE("two layers, learned variance") {
    auto model = mlvae::make_mlp2_mlvae<double>(input, hidden, style, content,
                                                mlvae::GaussianLearnedVarianceLikelihood<double>{});
    CHECK(model.decoder().output_size() == 2 * input);
    mlvae::Rng init(4);
    model.initialize(init);
    const auto check = mlvae_test::check_model_gradient(model, mlvae::Rng(8), x, offsets);
    INFO(check.result.report());
    CHECK(check.result.passed);
  }
  SUBCASE("one layer, fixed variance") {
    auto model = mlvae::make_mlp_mlvae_with<double>(input, hidden, style, content,
                                                    mlvae::GaussianLikelihood<double>(0.5));
    mlvae::Rng init(5);
    model.initialize(init);
    const auto check = mlvae_test::check_model_gradient(model, mlvae::Rng(9), x, offsets);
    INFO(check.result.report());
    CHECK(check.result.passed);
  }
  SUBCASE("two-layer VAE, learned variance") {
    auto model = mlvae::make_mlp2_vae<double>(input, hidden, 3, mlvae::GaussianLearnedVarianceLikelihood<double>{});
    mlvae::Rng init(6);
    model.initialize(init);
    const auto check = mlvae_test::check_model_gradient(model, mlvae::Rng(10), x);
    INFO(check.result.report());
    CHECK(check.result.passed);
  }
  // The default builder and the generic one build the same type (old checkpoints still load).
  CHECK(std::is_same_v<mlvae::MlpMLVAE<float>, mlvae::MlpMLVAEWith<float, mlvae::BernoulliLikelihood<float>>>);
}

TEST_CASE("trainer: data the likelihood cannot model are refused before training") {
  mlvae::Matrix<double> x = mlvae_test::toy_data(12);
  auto bernoulli = mlvae::make_mlp_mlvae<double>(12, 5, 2, 2);
  x(3, 7) = 3.0;
  CHECK_THROWS_WITH_AS((mlvae::Trainer<decltype(bernoulli)>(bernoulli, x, mlvae_test::toy_keys(12))),
                       contains("[0, 1] but the training data given to the Trainer holds 3 (observation 7, feature 3)"),
                       mlvae::ArgumentError);
  x(3, 7) = -1.0;
  CHECK_THROWS_AS((mlvae::Trainer<decltype(bernoulli)>(bernoulli, x, mlvae_test::toy_keys(12))), mlvae::ArgumentError);
  // The same data are fine for a Gaussian likelihood.
  auto gaussian = mlvae::make_mlp_mlvae_with<double>(12, 5, 2, 2, mlvae::GaussianLikelihood<double>(1.0));
  mlvae::Trainer<decltype(gaussian)> ok(gaussian, x, mlvae_test::toy_keys(12));
  CHECK(ok.sampler().observation_count() == 12);
}
