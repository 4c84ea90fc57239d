"""Shared test setup: no network, few threads (the test machine has 2 cores shared with other jobs)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may download anything
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

# RILL_TEST_THREADS overrides: on a loaded 2-core machine, 2 threads make small-tensor ops (softmax, log) ~10x
# slower than 1 thread (measured on the 16x6 mixture denoiser: 0.4-0.8 ms vs 4.5-6.4 ms per call).
torch.set_num_threads(int(os.environ.get("RILL_TEST_THREADS", "1")))
