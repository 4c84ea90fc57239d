"""Evaluation pieces (metrics, feature nets, adherence, likelihood); `rill.evaluate` is the public face."""
