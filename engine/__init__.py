"""almost surely: an LLM manages a EUR 10,000 paper portfolio; Python computes, logs and checks."""

import os

__version__ = "0.1.0"

# One BLAS thread, unless the environment says otherwise: the engine's arrays are small (21
# assets, a few thousand sessions), and OpenBLAS's thread pool costs more to start, and spins
# more between calls, than it saves. Set before numpy is imported (engine.cli imports it).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
