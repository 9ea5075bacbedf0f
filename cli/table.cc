#include "cli/table.h"

#include <algorithm>
#include <cstdlib>
#include <ostream>

namespace recsched::cli {

namespace {

const char* ansi(Color c) {
  switch (c) {
    case Color::kGreen:
      return "\033[32m";
    case Color::kYellow:
      return "\033[33m";
    case Color::kRed:
      return "\033[31m";
    case Color::kDim:
      return "\033[2m";
    case Color::kBold:
      return "\033[1m";
    case Color::kNone:
      break;
  }
  return "";
}

constexpr const char* kReset = "\033[0m";
constexpr const char* kMissing = "-";

void put(std::ostream& out, const std::string& text, Color c, bool color) {
  if (color && c != Color::kNone) {
    out << ansi(c) << text << kReset;
  } else {
    out << text;
  }
}

}  // namespace

bool looks_numeric(const std::string& text) {
  if (text.empty()) return false;
  char* end = nullptr;
  std::strtod(text.c_str(), &end);
  return end == text.c_str() + text.size() &&
         text.find_first_of("0123456789") != std::string::npos &&
         text.find_first_of("xXnN") == std::string::npos;  // not hex, nan or inf
}

Table::Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}

void Table::add_row(std::vector<Cell> cells) {
  cells.resize(std::max(cells.size(), headers_.size()), Cell(kMissing));
  rows_.push_back(std::move(cells));
}

std::vector<size_t> Table::widths() const {
  std::vector<size_t> w(headers_.size());
  for (size_t i = 0; i < headers_.size(); ++i) w[i] = headers_[i].size();
  for (const auto& row : rows_) {
    for (size_t i = 0; i < row.size() && i < w.size(); ++i)
      w[i] = std::max(w[i], row[i].text.size());
  }
  return w;
}

std::vector<bool> Table::right_aligned() const {
  std::vector<bool> right(headers_.size(), !rows_.empty());
  for (const auto& row : rows_) {
    for (size_t i = 0; i < right.size(); ++i) {
      if (row[i].text != kMissing && !looks_numeric(row[i].text)) right[i] = false;
    }
  }
  return right;
}

void Table::print_row(std::ostream& out, const std::vector<Cell>& row, const std::vector<size_t>& w,
                      const std::vector<bool>& right, bool color) const {
  std::string pending;  // spaces owed before the next cell (trailing ones are never written)
  size_t over = 0;      // how far earlier cells ran past their column
  for (size_t i = 0; i < row.size(); ++i) {
    const bool last = i + 1 == row.size();
    const size_t width = i < w.size() ? w[i] : 0;
    const size_t len = row[i].text.size();
    const size_t room = width > over ? width - over : 0;
    const size_t pad = room > len ? room - len : 0;
    over = len > room ? len - room : 0;
    out << pending;
    pending.clear();
    if (i < right.size() && right[i]) {
      out << std::string(pad, ' ');
      put(out, row[i].text, row[i].color, color);
    } else {
      put(out, row[i].text, row[i].color, color);
      if (!last) pending.append(pad, ' ');
    }
    if (!last) pending.append(2, ' ');
  }
  out << '\n';
}

void Table::print(std::ostream& out, bool color) const {
  const std::vector<size_t> w = widths();
  const std::vector<bool> right = right_aligned();
  std::vector<Cell> header;
  for (const auto& h : headers_) header.emplace_back(h, Color::kBold);
  // Headers follow their column's alignment, so "ITEMS" sits over its numbers.
  print_row(out, header, w, right, color);
  for (const auto& row : rows_) print_row(out, row, w, right, color);
}

void Table::print_rows_like(const Table& first, std::ostream& out, bool color) const {
  const std::vector<size_t> w = first.widths();
  std::vector<bool> right = first.right_aligned();
  if (first.rows_.empty()) right = right_aligned();
  for (const auto& row : rows_) print_row(out, row, w, right, color);
}

void print_fields(std::ostream& out, const std::vector<std::pair<std::string, Cell>>& fields,
                  bool color) {
  size_t w = 0;
  for (const auto& [k, v] : fields) w = std::max(w, k.size() + 1);
  for (const auto& [k, v] : fields) {
    if (k.empty()) {
      out << std::string(w + 2, ' ');  // a continuation of the previous field
    } else {
      put(out, k + ":", Color::kDim, color);
      out << std::string(w - k.size() - 1 + 2, ' ');
    }
    put(out, v.text, v.color, color);
    out << '\n';
  }
}

}  // namespace recsched::cli
