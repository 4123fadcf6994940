"""Pure ActGuide-RL algorithm: guidance levels, level search, objective math, diagnostics. No verl."""
