// The unit test runner: doctest's own main (see --help for filters).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
