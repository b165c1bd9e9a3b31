"""The control plane: what operators do to the fleet beyond reading it (commands to devices)."""
