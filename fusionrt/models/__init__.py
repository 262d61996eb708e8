"""Reference multimodal models (torch): modality encoders, fusion heads, decision head."""
