"""j1_min: a minimal pure-PyTorch reimplementation of J1 (LLM-as-a-Judge with Simple Test-Time
Scaling)."""
