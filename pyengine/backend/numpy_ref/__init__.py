"""The "numpy" device: every kernel again in NumPy, with the same names and signatures as the
compiled ones (inputs, then caller-allocated outputs, then parameters). It is the test oracle,
the float64 path of gradient checks, and the benchmark baseline. One file per op family, named
as in ``csrc/``.
"""

from pyengine.backend.numpy_ref.activation import *  # noqa: F401,F403
from pyengine.backend.numpy_ref.conv import *  # noqa: F401,F403
from pyengine.backend.numpy_ref.conv_winograd import *  # noqa: F401,F403
from pyengine.backend.numpy_ref.elementwise import *  # noqa: F401,F403
from pyengine.backend.numpy_ref.gemm import *  # noqa: F401,F403
from pyengine.backend.numpy_ref.norm import *  # noqa: F401,F403
from pyengine.backend.numpy_ref.optim import *  # noqa: F401,F403
from pyengine.backend.numpy_ref.pool import *  # noqa: F401,F403
from pyengine.backend.numpy_ref.reduce import *  # noqa: F401,F403
from pyengine.backend.numpy_ref.resample import *  # noqa: F401,F403
