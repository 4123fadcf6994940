"""ActGuide-RL recipe for verl: hydra config and entry point."""
