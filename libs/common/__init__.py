"""What the jobmesh services share: the spec, messages, subjects, states and bus helpers."""
