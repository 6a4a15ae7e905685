"""Typed executors (local now; ssh, wsl, slurm and lsf build on the same contract) and
the service that feeds them jobs from the JOBS work queue."""
