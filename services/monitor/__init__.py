"""The monitor: folds the EVENTS log into workflow snapshots (KV) and renders graphs."""
