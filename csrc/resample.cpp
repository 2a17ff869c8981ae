#include "common.h"

void bind_resample(py::module_& m) {}
