#include "common.h"

void bind_pool(py::module_& m) {}
