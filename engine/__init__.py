"""almost surely: an LLM manages a EUR 10,000 paper portfolio; Python computes, logs and checks."""

__version__ = "0.1.0"
