"""Conditioning: prompts -> the cond dict a backbone reads ({"tokens", "mask", "pooled", "labels"}).

text.py     HFTextEncoder (MiniLM by default, any local HF encoder), CachedEncoder, load_text_encoder
minilm.py   all-MiniLM-L6-v2 in plain torch (bit-identical to transformers, a fraction of the load time)
labels.py   ClassLabelEncoder: class ids through the same interface
"""
