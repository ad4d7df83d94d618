"""`infer bench`: a streaming load generator for OpenAI-compatible servers.

Modules: `prompts` (synthetic and dataset requests), `sse` (one streaming
request, timed), `tokens` (output token counting), `load` (one concurrency
level), `sweep` (setup, warmup and the whole sweep), `stats` (percentiles
and per-level summaries), `report` (text and JSON), `plot` (PNG), `cli`
(flags and the `run` entry point).
"""
