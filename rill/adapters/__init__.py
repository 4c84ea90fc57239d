"""rill.adapters: small trainable add-ons that change a backbone without retraining it (LoRA through peft,
ControlNet-style control branches). They sit above the backbones and below the model bundle; their weights
travel as named tensor groups in rill model files (rill.model.files.TensorGroup)."""
