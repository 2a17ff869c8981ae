#include "common.h"

void bind_norm(py::module_& m) {}
