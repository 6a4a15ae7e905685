"""The ``jobmesh`` command and the embedded stack (the one place that imports every
service)."""
