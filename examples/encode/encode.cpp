// encode — inference with mlvae::core alone: loads a model file (export_model writes one from a
// train_mlvae checkpoint; layout in docs/model_file.md), reads observations, one per line as
// whitespace- or comma-separated numbers (e.g. 784 pixel intensities in [0, 1]), from a file or
// stdin, and prints one line per observation: "content <means> style <means>". With --group it
// also prints the content mean of all observations taken as one group (the product of their
// Gaussian content posteriors, as the ML-VAE infers a group's shared content).
//
//   encode MODEL_FILE [OBSERVATIONS|-] [--precision DIGITS] [--group]
#include <mlvae/dist/group_posterior.hpp>
#include <mlvae/model/model_file.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace {

void print_row(const char* label, const mlvae::Matrix<float>& m, mlvae::Index col, int precision) {
  std::printf("%s", label);
  for (mlvae::Index i = 0; i < m.rows(); ++i) std::printf(" %.*f", precision, static_cast<double>(m(i, col)));
}

std::vector<std::vector<float>> read_observations(std::istream& in) {
  std::vector<std::vector<float>> rows;
  std::string line;
  while (std::getline(in, line)) {
    for (char& c : line)
      if (c == ',') c = ' ';
    std::istringstream fields(line);
    std::vector<float> row;
    float v = 0;
    while (fields >> v) row.push_back(v);
    if (!fields.eof()) throw mlvae::IoError("line " + std::to_string(rows.size() + 1) + ": not a number: '" + line.substr(0, 40) + "'");
    if (!row.empty()) rows.push_back(std::move(row));
  }
  return rows;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> positional;
  int precision = 6;
  bool group = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--precision" && i + 1 < argc) precision = std::atoi(argv[++i]);
    else if (a == "--group") group = true;
    else if (a == "-h" || a == "--help") positional.assign(3, a);  // prints the usage below
    else positional.push_back(a);
  }
  if (positional.empty() || positional.size() > 2) {
    std::fprintf(stderr, "usage: encode MODEL_FILE [OBSERVATIONS|-] [--precision DIGITS] [--group]\n"
                         "  prints \"content <means> style <means>\" for each observation (one per line)\n");
    return positional.size() == 3 && positional[0][0] == '-' ? 0 : 2;
  }
  try {
    std::vector<std::vector<float>> rows;
    if (positional.size() < 2 || positional[1] == "-") {
      rows = read_observations(std::cin);
    } else {
      std::ifstream file(positional[1]);
      if (!file) throw mlvae::IoError("cannot open '" + positional[1] + "'");
      rows = read_observations(file);
    }
    if (rows.empty()) throw mlvae::IoError("no observations given");
    mlvae::with_model_file<float>(positional[0], [&](auto& model) {
      const mlvae::Index n = static_cast<mlvae::Index>(rows.size()), d = model.data_size();
      mlvae::Matrix<float> x(d, n);
      for (mlvae::Index j = 0; j < n; ++j) {
        const auto& row = rows[static_cast<std::size_t>(j)];
        mlvae::require<mlvae::ShapeError>(static_cast<mlvae::Index>(row.size()) == d, "observation ", j + 1,
                                          ": expected ", d, " values, found ", row.size());
        for (mlvae::Index i = 0; i < d; ++i) x(i, j) = row[static_cast<std::size_t>(i)];
      }
      mlvae::Matrix<float> style_mean, style_logvar, content_mean, content_logvar;
      model.encode(x, style_mean, style_logvar, content_mean, content_logvar);
      for (mlvae::Index j = 0; j < n; ++j) {
        print_row("content", content_mean, j, precision);
        print_row(" style", style_mean, j, precision);
        std::printf("\n");
      }
      if (group) {
        mlvae::Matrix<float> group_mean, group_logvar;
        mlvae::group_posterior(content_mean, content_logvar, {0, n}, group_mean, group_logvar);
        print_row("group content", group_mean, 0, precision);
        std::printf("\n");
      }
    });
  } catch (const mlvae::Error& e) {
    std::fprintf(stderr, "encode: %s\n", e.what());
    return 1;
  }
  return 0;
}
