#include "common.h"

void bind_conv(py::module_& m) {}
