// recschedctl's tables: alignment, missing cells, colour only when asked.
#include "cli/table.h"

#include <doctest/doctest.h>

#include <sstream>

namespace recsched::cli {
namespace {

TEST_CASE("a table aligns text left and numbers right, two spaces apart, no trailing blanks") {
  Table t({"MODEL", "ITEMS", "OUTCOME"});
  t.add_row({"rmc1", "7", "ok"});
  t.add_row({"din", "1024", "rejected: queue full"});
  t.add_row({"ncf"});  // missing cells
  std::ostringstream out;
  t.print(out, false);
  CHECK(out.str() ==
        "MODEL  ITEMS  OUTCOME\n"
        "rmc1       7  ok\n"
        "din     1024  rejected: queue full\n"
        "ncf        -  -\n");
}

TEST_CASE("colour codes appear only when asked, and never count in the width") {
  Table t({"A", "B"});
  t.add_row({Cell("ok", Color::kGreen), "x"});
  std::ostringstream plain, coloured;
  t.print(plain, false);
  t.print(coloured, true);
  CHECK(plain.str() == "A   B\nok  x\n");
  CHECK(coloured.str() == "\033[1mA\033[0m   \033[1mB\033[0m\n\033[32mok\033[0m  x\n");
}

TEST_CASE("rows printed later keep the first table's columns") {
  Table first({"QUERY", "MODEL"});
  first.add_row({"1", "rmc1"});
  Table later({"QUERY", "MODEL"});
  later.add_row({"12345678", "din"});
  std::ostringstream out;
  first.print(out, false);
  later.print_rows_like(first, out, false);
  CHECK(out.str() == "QUERY  MODEL\n    1  rmc1\n12345678  din\n");
}

TEST_CASE("fields align their values, and an empty key continues the one above") {
  std::ostringstream out;
  print_fields(out, {{"policy", Cell("static")}, {"params", Cell("a=1")}, {"", Cell("b=2")}},
               false);
  CHECK(out.str() == "policy:  static\nparams:  a=1\n         b=2\n");
}

TEST_CASE("looks_numeric accepts numbers only") {
  for (const char* yes : {"0", "-3", "4.50", "1e-05"}) CHECK(looks_numeric(yes));
  for (const char* no : {"", "-", "cpu0", "0x10", "nan", "inf", "1 2"})
    CHECK_FALSE(looks_numeric(no));
}

}  // namespace
}  // namespace recsched::cli
