/// @file
/// mlvae/data/csv.hpp — reader for delimited text tables (CSV), standard library only: an optional
/// header row (detected or forced), double-quoted fields ("" for a quote), blank lines skipped,
/// every row the same width. Cells stay text until a column is asked for as numbers, so a group
/// key column may hold names; numeric conversion errors name the file, line and column.
#pragma once

#include "mlvae/core/error.hpp"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <vector>

namespace mlvae {

/// Whether the first row of a CSV file holds column names.
enum class CsvHeader {
  Auto,  ///< a header when some cell of the first row is not a number
  Yes,   ///< the first row is always the header
  No     ///< every row is data; columns are named "0", "1", ...
};

/// Options of read_csv.
struct CsvOptions {
  char delimiter = ',';            ///< field separator
  CsvHeader header = CsvHeader::Auto;  ///< header detection
};

/// A table read from a CSV file: text cells, row-major.
struct CsvTable {
  std::string path;                 ///< the file it was read from (for messages)
  std::vector<std::string> names;   ///< one name per column (from the header, or "0", "1", ...)
  bool had_header = false;          ///< the first row was a header
  std::vector<std::string> cells;   ///< rows() x columns() cells, row-major
  std::vector<std::size_t> lines;   ///< 1-based line number of each data row in the file

  /// Number of data rows (the header excluded).
  std::size_t rows() const { return lines.size(); }
  /// Number of columns.
  std::size_t columns() const { return names.size(); }
  /// Cell (r, c) as text.
  const std::string& cell(std::size_t r, std::size_t c) const { return cells[r * columns() + c]; }

  /// Index of the column called `name`; without a header, `name` may be a 0-based column number.
  /// @throws ArgumentError naming the file and the available columns when there is none.
  std::size_t column_index(const std::string& name) const {
    for (std::size_t c = 0; c < names.size(); ++c)
      if (names[c] == name) return c;
    std::string available;
    for (std::size_t c = 0; c < names.size() && c < 30; ++c) available += (c ? ", " : "") + names[c];
    raise_error<ArgumentError>(detail::concat("CSV file '", path, "': no column '", name, "' (columns: ", available,
                                       names.size() > 30 ? ", ..." : "", ")"));
  }

  /// Column c as numbers. @throws IoError naming the line and column of a cell that is not a finite number.
  std::vector<double> numeric_column(std::size_t c) const {
    std::vector<double> out(rows());
    for (std::size_t r = 0; r < rows(); ++r) out[r] = to_number(r, c);
    return out;
  }

  /// Cell (r, c) as a finite number. @throws IoError naming file, line and column otherwise.
  double to_number(std::size_t r, std::size_t c) const {
    double v = 0;
    require<IoError>(parse_number(cell(r, c), v), "CSV file '", path, "', line ", lines[r], ", column '", names[c],
                     "': expected a finite number, found '", cell(r, c), "'");
    return v;
  }

  /// Parses `text` (surrounding spaces allowed) as a finite number; false when it is not one.
  static bool parse_number(const std::string& text, double& value) {
    std::size_t b = 0, e = text.size();
    while (b < e && (text[b] == ' ' || text[b] == '\t')) ++b;
    while (e > b && (text[e - 1] == ' ' || text[e - 1] == '\t')) --e;
    if (b == e) return false;
    const std::string t = text.substr(b, e - b);
    char* end = nullptr;
    errno = 0;
    value = std::strtod(t.c_str(), &end);
    return end == t.c_str() + t.size() && errno != ERANGE && std::isfinite(value);
  }
};

namespace detail {

/// Splits one line into fields, honouring double quotes. Returns false on an unterminated quote.
inline bool split_csv_line(const std::string& line, char delimiter, std::vector<std::string>& fields) {
  fields.clear();
  std::string field;
  bool quoted = false, was_quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char ch = line[i];
    if (quoted) {
      if (ch == '"') {
        if (i + 1 < line.size() && line[i + 1] == '"') {
          field.push_back('"');
          ++i;
        } else {
          quoted = false;
        }
      } else {
        field.push_back(ch);
      }
    } else if (ch == '"' && !was_quoted && field.find_first_not_of(" \t") == std::string::npos) {
      field.clear();
      quoted = was_quoted = true;
    } else if (ch == delimiter) {
      fields.push_back(field);
      field.clear();
      was_quoted = false;
    } else {
      field.push_back(ch);
    }
  }
  fields.push_back(field);
  return !quoted;
}

}  // namespace detail

/// Reads a CSV file into text cells.
/// @throws IoError when the file is missing or empty, a quote is unterminated, or a row has a
///         different number of fields than the first (naming the line and both counts).
inline CsvTable read_csv(const std::string& path, const CsvOptions& options = {}) {
  std::error_code ec;
  require<IoError>(std::filesystem::is_regular_file(path, ec), "CSV file '", path,
                   "' does not exist or is not a regular file");
  std::ifstream in(path, std::ios::binary);
  require<IoError>(static_cast<bool>(in), "CSV file '", path, "' could not be opened for reading");
  CsvTable table;
  table.path = path;
  std::string line;
  std::vector<std::string> fields;
  std::size_t line_number = 0;
  bool first = true;
  while (std::getline(in, line)) {
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line_number == 1 && line.size() >= 3 && line.compare(0, 3, "\xEF\xBB\xBF") == 0) line.erase(0, 3);  // BOM
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    require<IoError>(detail::split_csv_line(line, options.delimiter, fields), "CSV file '", path, "', line ",
                     line_number, ": unterminated double quote");
    if (first) {
      first = false;
      bool header = options.header == CsvHeader::Yes;
      if (options.header == CsvHeader::Auto) {
        double v = 0;
        for (const auto& f : fields)
          if (!CsvTable::parse_number(f, v)) header = true;
      }
      table.had_header = header;
      if (header) {
        table.names = fields;
        for (auto& n : table.names) {
          const auto b = n.find_first_not_of(" \t"), e = n.find_last_not_of(" \t");
          n = b == std::string::npos ? std::string() : n.substr(b, e - b + 1);
        }
        continue;
      }
      for (std::size_t c = 0; c < fields.size(); ++c) table.names.push_back(std::to_string(c));
    }
    require<IoError>(fields.size() == table.names.size(), "CSV file '", path, "', line ", line_number, ": expected ",
                     table.names.size(), " fields (as in the first row), found ", fields.size());
    table.cells.insert(table.cells.end(), fields.begin(), fields.end());
    table.lines.push_back(line_number);
  }
  require<IoError>(!in.bad(), "CSV file '", path, "': read error");
  require<IoError>(!first, "CSV file '", path, "' is empty");
  return table;
}

}  // namespace mlvae
