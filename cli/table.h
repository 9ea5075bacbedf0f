// Aligned text tables and key/value blocks for recschedctl's human output, with optional
// ANSI colour. Standard library only; colour is the caller's decision (tty, NO_COLOR).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <utility>
#include <vector>

namespace recsched::cli {

enum class Color : uint8_t { kNone, kGreen, kYellow, kRed, kDim, kBold };

/// One cell: text plus an optional colour (never counted in the width).
struct Cell {
  std::string text;
  Color color = Color::kNone;
  Cell(std::string t, Color c = Color::kNone) : text(std::move(t)), color(c) {}  // NOLINT
  Cell(const char* t, Color c = Color::kNone) : text(t), color(c) {}             // NOLINT
};

/// Columns separated by two spaces. A column whose every cell is a number (or "-") is
/// right-aligned, others left-aligned; the last column is never padded. Widths count
/// bytes: the daemon's names are ASCII.
class Table {
 public:
  explicit Table(std::vector<std::string> headers);
  void add_row(std::vector<Cell> cells);  ///< missing trailing cells print as "-"
  size_t rows() const { return rows_.size(); }
  /// Header (bold when `color`) and every row.
  void print(std::ostream& out, bool color) const;
  /// Just the rows, formatted with the widths of an earlier print() (for --follow, where
  /// rows keep coming): a longer cell pushes its row's later columns right.
  void print_rows_like(const Table& first, std::ostream& out, bool color) const;

 private:
  std::vector<size_t> widths() const;
  std::vector<bool> right_aligned() const;
  void print_row(std::ostream& out, const std::vector<Cell>& row, const std::vector<size_t>& w,
                 const std::vector<bool>& right, bool color) const;

  std::vector<std::string> headers_;
  std::vector<std::vector<Cell>> rows_;
};

/// "key:  value" lines with the values aligned; keys are dim when `color`. An empty key
/// continues the field above (its value printed under that field's value).
void print_fields(std::ostream& out, const std::vector<std::pair<std::string, Cell>>& fields,
                  bool color);

/// True for "12", "-3", "4.50", "1e-05": the cells a table right-aligns.
bool looks_numeric(const std::string& text);

}  // namespace recsched::cli
